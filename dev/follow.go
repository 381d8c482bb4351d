package dev

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
)

// followActive serves the revision the control plane makes active when
// it is not the one butter dev serves: a rollback (butter rollback, the
// web UI), or a revision activated again with butter deploy. It waits on
// the project's status with blocking queries until ctx ends. The
// revision is rebuilt from the control plane (rebuild) and served as a
// change would be (a new pool, the gateway switched, the old pool
// drained); the watched directory's next change is deployed as usual, on
// top of it.
func (d *env) followActive(ctx context.Context, project string) {
	var index uint64
	for ctx.Err() == nil {
		st, meta, err := d.client.Projects().Status(ctx, project, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Debug("follow the active revision", "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		index = meta.LastIndex
		if st.Active == nil {
			continue
		}
		d.deployMu.Lock()
		// Read again: a deploy of a change may have activated another
		// revision while this waited for it.
		st, _, err = d.client.Projects().Status(ctx, project, nil)
		if err != nil || st.Active == nil {
			d.deployMu.Unlock()
			continue
		}
		d.mu.Lock()
		serving := d.current != nil && d.current.revision == st.Active.ID
		d.mu.Unlock()
		if !serving {
			d.ui.Output(fmt.Sprintf("==> revision %s was made active (%s); serving it", st.Active.ID, activation(st.Active)))
			start := time.Now()
			if err := d.serveRevision(ctx, project, st.Active.ID); err != nil {
				d.ui.Error(fmt.Sprintf("==> cannot serve revision %s: %v", st.Active.ID, err))
			} else {
				d.ui.Output(fmt.Sprintf("==> revision %s serving (deployed in %s)", st.Active.ID, time.Since(start).Round(time.Millisecond)))
			}
		}
		d.deployMu.Unlock()
	}
}

// activation says why a revision became active, from its deployment's
// message ("rolled back from ...") when there is one.
func activation(rev *api.Revision) string {
	if m := rev.Deployment.Message; m != "" {
		return m
	}
	return "through the control plane"
}

// serveRevision rebuilds revision id of project and serves it. A
// revision that cannot be rebuilt exactly is not served: the running one
// keeps serving, and the control plane says it is active, until the next
// change.
func (d *env) serveRevision(ctx context.Context, project, id string) error {
	rev, _, err := d.client.Revisions().Get(ctx, project, id, nil)
	if err != nil {
		return fmt.Errorf("read it from the control plane: %w", err)
	}
	dir := filepath.Join(d.dataDir, "revisions", id)
	if err := d.rebuild(ctx, rev, dir); err != nil {
		return err
	}
	proj, rep := spec.Load(dir)
	if err := rep.WriteText(d.diag); err != nil || proj == nil {
		return errors.New("its spec files do not load")
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		return err
	}
	if c.Revision != id {
		return fmt.Errorf("rebuilt from its files and bundles, it compiles to revision %s, not %s", c.Revision, id)
	}
	return d.deployAs(ctx, proj, id)
}

// rebuild writes a revision's project tree into dir: its spec files, and
// each of its blobs at its path (a function's bundle, unpacked: the
// source directory, or the source file; a schema or OpenAPI document as
// it is), fetched from the control plane's blob store. An existing dir
// is written anew.
func (d *env) rebuild(ctx context.Context, rev *api.Revision, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	write := func(rel string, mode os.FileMode, b []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return fmt.Errorf("path %q leaves the project", rel)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, mode)
	}
	for name, text := range rev.Specs {
		if err := write(name, 0o644, []byte(text)); err != nil {
			return fmt.Errorf("spec file %s: %w", name, err)
		}
	}
	for p, digest := range rev.Bundles {
		rc, err := d.client.Blobs().Get(ctx, digest)
		if err != nil {
			return fmt.Errorf("blob %s (%s): %w", digest, p, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("blob %s (%s): %w", digest, p, err)
		}
		entries, ok := untar(b)
		switch {
		case !ok: // a schema or an OpenAPI document
			err = write(p, 0o644, b)
		case len(entries) == 1 && entries[0].name == path.Base(p):
			// A single-file source: its bundle holds the file alone.
			err = write(p, entries[0].mode, entries[0].data)
		default:
			for _, e := range entries {
				if err = write(path.Join(p, e.name), e.mode, e.data); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("blob %s (%s): %w", digest, p, err)
		}
	}
	return nil
}

type tarEntry struct {
	name string
	mode os.FileMode
	data []byte
}

// untar reads a bundle (package bundle: an uncompressed tar of regular
// files), or says it is not one.
func untar(b []byte) ([]tarEntry, bool) {
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, len(out) > 0
		}
		if err != nil || h.Typeflag != tar.TypeReg || strings.HasPrefix(h.Name, "/") || strings.Contains(h.Name, "..") {
			return nil, false
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, false
		}
		out = append(out, tarEntry{name: h.Name, mode: os.FileMode(h.Mode) & 0o755, data: data})
	}
}
