// Package sdk ships Butter's language SDKs inside the butter binary and
// installs them where a pool's process runtimes can start workers: the
// Node and Python workers, the Go SDK's source for building Go functions
// offline, and the Java SDK's source, which the pool compiles with javac.
// The SDKs themselves live beside this file: sdk/node, sdk/python,
// sdk/java and the sdk/go module.
package sdk

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/butterfn/butter/plugins/runtime"
	gosdk "github.com/butterfn/butter/sdk/go"
)

//go:embed node/worker.js node/butter.js python/butter_main.py python/butter_worker.py python/_butter_json.py python/butter.py java/dev/butter/*.java
var files embed.FS

// Install writes the SDKs under dir (created if needed), in a
// subdirectory named by their content's digest, and returns where they
// are. Binaries of different versions on one machine (a client during an
// upgrade, tests of two checkouts) so never overwrite each other's SDKs
// under workers they are starting; the same version installs over itself
// harmlessly.
func Install(dir string) (*runtime.SDKs, error) {
	v, err := version()
	if err != nil {
		return nil, fmt.Errorf("install SDKs in %s: %w", dir, err)
	}
	dir = filepath.Join(dir, v)
	if err := writeTree(files, ".", dir); err != nil {
		return nil, fmt.Errorf("install SDKs in %s: %w", dir, err)
	}
	goDir := filepath.Join(dir, "go")
	if err := writeTree(gosdk.Source, ".", goDir); err != nil {
		return nil, fmt.Errorf("install the Go SDK in %s: %w", goDir, err)
	}
	return &runtime.SDKs{
		Node:     filepath.Join(dir, "node", "worker.js"),
		Python:   filepath.Join(dir, "python", "butter_main.py"),
		GoSDK:    goDir,
		JavaSDK:  filepath.Join(dir, "java"),
		BuildDir: filepath.Join(dir, "builds"),
	}, nil
}

// version is the digest of the embedded SDKs' files (paths and contents),
// 16 hex digits.
func version() (string, error) {
	h := sha256.New()
	for _, src := range []fs.FS{files, gosdk.Source} {
		err := fs.WalkDir(src, ".", func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := fs.ReadFile(src, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func writeTree(src fs.FS, root, dst string) error {
	return fs.WalkDir(src, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(p))
		if cur, err := os.ReadFile(out); err == nil && bytes.Equal(cur, b) {
			// Installed already: left as it is, so its modification
			// time, which Python's bytecode cache (__pycache__) is
			// checked against, stays.
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		// Write beside and rename, so a process starting a worker never
		// reads a half-written file, even while another installs.
		tmp, err := os.CreateTemp(filepath.Dir(out), ".install-*")
		if err != nil {
			return err
		}
		if _, err := tmp.Write(b); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return err
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Chmod(tmp.Name(), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp.Name(), out)
	})
}
