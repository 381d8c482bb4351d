// Package deploy pushes a project to the control plane as a revision: it
// compiles the project's spec to its Nomad job (package jobs), bundles each
// function's source and uploads it by content hash (package bundle, then
// api's Blobs), and records the revision (spec files, bundle digests, git
// commit, the rendered job, cron timers, routes and stream bindings), which
// becomes the project's active one.
//
// `butter deploy` and `butter dev` both push through it, so a project
// deployed either way records the same revision.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/routes"
	nomadapi "github.com/hashicorp/nomad/api"
)

// Upload describes one blob being uploaded, for progress reports.
type Upload struct {
	// N counts uploads from 1 to Total.
	N, Total int
	// Path is the project-relative source (a bundle's directory or file,
	// or a schema).
	Path string
	// Size is the blob's length in bytes; Digest its "sha256:<hex>".
	Size   int
	Digest string
	// Sent is how many of its bytes went to the control plane so far,
	// and Done is set once the control plane stored the blob.
	Sent int64
	Done bool
}

// Option tunes Push.
type Option func(*options)

type options struct {
	progress func(Upload)
	author   string
	deps     *deps.Installer
	canary   *api.CanaryRequest
	dev      bool
}

// ForDev pushes to butter dev's control plane, which runs what a cluster
// cannot: MQTT connectors without an address, which use its embedded
// broker (jobs.CheckDeployable). Default: the project must be deployable
// to Nomad.
func ForDev() Option { return func(o *options) { o.dev = true } }

// WithCanary deploys the revision as a canary beside the serving one
// (api.CanaryRequest). Default: the revision replaces the serving one.
func WithCanary(c *api.CanaryRequest) Option { return func(o *options) { o.canary = c } }

// WithProgress calls f before each blob's upload (Sent 0), as its bytes
// are sent (from the goroutine that sends them), and once it is stored
// (Done). Calls are never concurrent. Default:
// no reports.
func WithProgress(f func(Upload)) Option { return func(o *options) { o.progress = f } }

// WithInstaller installs the functions' dependencies with in (package
// deps). Default: deps.Default().
func WithInstaller(in *deps.Installer) Option { return func(o *options) { o.deps = in } }

// WithAuthor records who deploys. Default: $USER.
func WithAuthor(name string) Option { return func(o *options) { o.author = name } }

// Push records a revision of proj, loaded from dir, on the control plane
// behind client, and makes it the project's active revision. Pushing
// unchanged content activates the existing revision (the answer's New is
// false).
//
// Blobs are uploaded before the revision is recorded, so a revision never
// names a blob the control plane lacks. When Push fails part way, blobs
// already uploaded stay (they are content-addressed and harmless) and no
// revision is recorded.
func Push(ctx context.Context, client *api.Client, dir string, proj *spec.Project, opts ...Option) (*api.RevisionCreateResponse, error) {
	o := options{author: os.Getenv("USER"), deps: deps.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if !o.dev {
		if err := jobs.CheckDeployable(proj); err != nil {
			return nil, err
		}
	}
	compiled, sha, dirty, err := compile(ctx, client, dir, proj, o.deps)
	if err != nil {
		return nil, err
	}
	bundles, _, err := UploadArtifacts(ctx, client, dir, compiled, o.progress)
	if err != nil {
		return nil, err
	}
	specs, err := specFiles(dir, proj)
	if err != nil {
		return nil, err
	}
	jobJSON, err := jobs.RenderJSON(compiled.Job)
	if err != nil {
		return nil, err
	}
	var timers []*api.Timer
	for _, t := range jobs.Timers(proj) {
		timers = append(timers, &api.Timer{ID: t.ID, Schedule: t.Schedule, Timezone: t.Timezone, Topic: t.Topic})
	}
	out, err := client.Revisions().Create(ctx, proj.Name, &api.RevisionCreateRequest{
		ID: compiled.Revision, Specs: specs, Bundles: bundles,
		GitSHA: sha, Dirty: dirty, Author: o.author, Job: json.RawMessage(jobJSON),
		Timers: timers, Routes: routeList(proj), Streams: streamList(proj), Canary: o.canary,
	})
	if err != nil {
		return nil, fmt.Errorf("record the revision: %w%s", err, routeSite(proj, err))
	}
	return out, nil
}

// specFiles reads the project's spec files, by project-relative name, for
// a revision to record, with the values of its variables
// (spec.ValuesFile), so that every later load of the revision (the
// gateway's routes, butter diff) sees the values it was deployed with.
func specFiles(dir string, proj *spec.Project) (map[string]string, error) {
	fsys := os.DirFS(dir)
	specs := map[string]string{}
	for _, f := range proj.Files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		specs[filepath.ToSlash(f)] = string(b)
	}
	if vals := proj.ValuesText(); vals != "" {
		specs[spec.ValuesFile] = vals
	}
	return specs, nil
}

// UploadArtifacts stores the compiled project's bundles and schemas,
// read from dir, on the control plane behind client, reporting to
// progress (which may be nil). It returns each artifact's digest by its
// source path, and, from a server with ACLs on, each digest's signature
// (api.BlobPutResponse.Signature).
func UploadArtifacts(ctx context.Context, client *api.Client, dir string, compiled *jobs.Compiled, progress func(Upload)) (digests, sigs map[string]string, err error) {
	fsys := os.DirFS(dir)
	digests, sigs = map[string]string{}, map[string]string{}
	for i, a := range compiled.Artifacts {
		var buf bytes.Buffer
		if a.IsSchema {
			b, err := fs.ReadFile(fsys, a.Path)
			if err != nil {
				return nil, nil, err
			}
			buf.Write(b)
		} else if _, err := bundle.WriteWith(fsys, a.Path, a.Extras, &buf); err != nil {
			return nil, nil, err
		}
		u := Upload{N: i + 1, Total: len(compiled.Artifacts), Path: a.Path, Size: buf.Len(), Digest: string(a.Digest)}
		var body io.Reader = &buf
		if progress != nil {
			progress(u)
			body = &countingReader{r: &buf, u: u, f: progress}
		}
		resp, err := client.Blobs().Put(ctx, string(a.Digest), body, int64(buf.Len()))
		if err != nil {
			return nil, nil, fmt.Errorf("upload %s: %w", a.Path, err)
		}
		if progress != nil {
			u.Sent, u.Done = int64(u.Size), true
			progress(u)
		}
		digests[a.Path] = string(a.Digest)
		if resp.Signature != "" {
			sigs[string(a.Digest)] = resp.Signature
		}
	}
	return digests, sigs, nil
}

// SignArtifacts adds each blob's signature (by digest, as
// UploadArtifacts returns them) to the job's artifact URLs that fetch it,
// so that Nomad clients fetch them without a token.
func SignArtifacts(job *nomadapi.Job, sigs map[string]string) error {
	return jobs.SignArtifacts(job, func(hex string) (string, error) { return sigs["sha256:"+hex], nil })
}

// compile compiles proj as Push records it: artifact URLs on client's
// control plane, the git commit of dir (and whether it has changes), the
// functions' dependencies installed by in.
func compile(ctx context.Context, client *api.Client, dir string, proj *spec.Project, in *deps.Installer) (c *jobs.Compiled, sha string, dirty bool, err error) {
	sha, dirty = gitSHA(dir)
	jopts := []jobs.Option{jobs.WithBlobURL(client.Blobs().URL()), WithDeps(ctx, in, dir)}
	if sha != "" {
		tag := sha
		if dirty {
			tag += "-dirty"
		}
		jopts = append(jopts, jobs.WithGitSHA(tag))
	}
	c, err = jobs.Compile(proj, jopts...)
	return c, sha, dirty, err
}

// WithDeps is the jobs option that installs the dependencies of the
// project in dir's functions with in.
func WithDeps(ctx context.Context, in *deps.Installer, dir string) jobs.Option {
	return jobs.WithDeps(func(runtime, src string) ([]bundle.Extra, error) {
		return in.Extras(ctx, runtime, filepath.Join(dir, filepath.FromSlash(src)), src)
	})
}

// countingReader reports an upload's bytes as they are read.
type countingReader struct {
	r io.Reader
	u Upload
	f func(Upload)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.u.Sent += int64(n)
		c.f(c.u)
	}
	return n, err
}

// gitSHA returns the commit of dir's work tree, with dirty set when it
// has changes, or "" outside git.
func gitSHA(dir string) (sha string, dirty bool) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	sha = strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain", ".").Output()
	return sha, err == nil && len(bytes.TrimSpace(st)) > 0
}

// routeList is the project's http routes, "METHOD /path -> target", as the
// revision records them.
func routeList(p *spec.Project) []string {
	var out []string
	for _, r := range routes.FromSpec(p, "") {
		target := r.Function
		if len(r.Pipeline) > 0 {
			target = strings.Join(r.Pipeline, " | ")
		}
		out = append(out, r.Pattern()+" -> "+target)
	}
	return out
}

// routeSite says where the route a refused revision's error names
// (`route "METHOD /path" ...`, the control plane's route checks) is
// written in the project, or "" when the error names none of its routes.
func routeSite(p *spec.Project, err error) string {
	msg := err.Error()
	var triggers []*spec.Trigger
	for _, f := range p.Functions {
		triggers = append(triggers, f.Triggers...)
	}
	for _, pl := range p.Pipelines {
		triggers = append(triggers, pl.Triggers...)
	}
	for _, t := range triggers {
		if t.Type != spec.TriggerHTTP || !strings.Contains(msg, fmt.Sprintf("route %q", t.Route())) {
			continue
		}
		r := t.RouteRange
		return fmt.Sprintf(" (route %q is written at %s:%d:%d)", t.Route(), r.Filename, r.Start.Line, r.Start.Column)
	}
	return ""
}

// streamList is the project's stream bindings, "function <- topic (group)"
// and "function -> topic", as the revision records them.
func streamList(p *spec.Project) []string {
	var out []string
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			if t.Type == spec.TriggerStream && t.Stream != nil {
				out = append(out, fmt.Sprintf("%s <- %s (%s)", f.Name, names.Topic(p.Name, t.Stream.Name), names.ConsumerGroup(p.Name, f.Name, t.Stream.Name)))
			}
		}
		if f.Output != nil {
			out = append(out, fmt.Sprintf("%s -> %s", f.Name, names.Topic(p.Name, f.Output.Name)))
		}
	}
	return out
}
