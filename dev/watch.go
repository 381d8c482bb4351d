package dev

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
)

// watch redeploys on file changes until ctx ends.
func (d *env) watch(ctx context.Context) {
	last := d.stamp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		fp := d.stamp()
		if fp == last {
			continue
		}
		// Let a burst of saves settle.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			next := d.stamp()
			if next == fp {
				break
			}
			fp = next
		}
		last = fp
		d.ui.Output("==> change detected; redeploying")
		proj, rep := spec.Load(d.dir, d.vars...)
		if err := rep.WriteText(d.diag); err != nil || proj == nil {
			d.ui.Error("==> the change is invalid; the running revision keeps serving")
			continue
		}
		start := time.Now()
		d.deployMu.Lock()
		err := d.deploy(ctx, proj)
		d.deployMu.Unlock()
		if err != nil {
			var le *pool.LoadError
			if errors.As(err, &le) {
				d.ui.Error(fmt.Sprintf("==> the change does not load (%s); revision %s keeps serving:", strings.Join(le.Names(), ", "), d.current.revision))
				d.reportLoad(le)
				continue
			}
			d.ui.Error("==> redeploy failed; the running revision keeps serving: " + err.Error())
			continue
		}
		d.ui.Output(fmt.Sprintf("==> revision %s serving (deployed in %s)", d.current.revision, time.Since(start).Round(time.Millisecond)))
		d.printSecrets(proj)
	}
}

// stamp is what watch compares: the project's files and, when the
// running project has secrets, the secrets file (a dot-directory, which
// fingerprint skips).
func (d *env) stamp() string {
	fp := fingerprint(d.dir)
	d.mu.Lock()
	proj := d.proj
	d.mu.Unlock()
	if proj != nil && HasSecrets(proj) {
		if info, err := os.Stat(d.secretsFile); err == nil {
			fp += fmt.Sprintf(" %d %d", info.Size(), info.ModTime().UnixNano())
		}
	}
	return fp
}

// fingerprint hashes the names, sizes and modification times of the
// project's files, skipping dot-directories, node_modules and caches.
func fingerprint(dir string) string {
	h := sha256.New()
	var lines []string
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := e.Name()
		if e.IsDir() && path != dir && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "__pycache__") {
			return filepath.SkipDir
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", path, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}
