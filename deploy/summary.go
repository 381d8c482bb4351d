package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
)

// Summary is a revision in the terms a declarative tool compares (the
// Terraform provider's plan): its id, a fingerprint of each function and
// its routes. Two summaries of the same content are equal, whether one
// was compiled here (Local) and the other read from the control plane
// (Remote).
type Summary struct {
	// Revision is the content hash Push records.
	Revision string
	// Functions are "sha256:<12 hex>" fingerprints of each function's
	// settings and code digest, by name: a changed function changes its
	// fingerprint, an unchanged one keeps it.
	Functions map[string]string
	// Routes are "METHOD /path -> target", sorted.
	Routes []string
}

// Local compiles proj, loaded from dir, as Push would record it, and
// summarises it. Nothing is uploaded or recorded.
func Local(ctx context.Context, client *api.Client, dir string, proj *spec.Project) (*Summary, error) {
	compiled, _, _, err := compile(ctx, client, dir, proj, deps.Default())
	if err != nil {
		return nil, err
	}
	job, err := jobs.RenderJSON(compiled.Job)
	if err != nil {
		return nil, err
	}
	return summarise(compiled.Revision, job, routeList(proj))
}

// Remote summarises a revision read from the control plane with its job
// (Revisions().Get).
func Remote(rev *api.Revision) (*Summary, error) {
	return summarise(rev.ID, rev.Job, rev.Routes)
}

func summarise(id string, job []byte, routes []string) (*Summary, error) {
	fns, err := functionsOf(job)
	if err != nil {
		return nil, fmt.Errorf("revision %s's job: %w", id, err)
	}
	s := &Summary{Revision: id, Functions: map[string]string{}, Routes: append([]string{}, routes...)}
	sort.Strings(s.Routes)
	for name, f := range fns {
		// The bundle is where the artifact is fetched from (the control
		// plane's address); the digest is what it holds.
		delete(f, "bundle")
		b, err := json.Marshal(f) // map keys sorted
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		s.Functions[name] = "sha256:" + hex.EncodeToString(sum[:6])
	}
	return s, nil
}
