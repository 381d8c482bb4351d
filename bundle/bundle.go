// Package bundle packs a function's source into a deterministic tar
// archive named by its content hash. The same source always gives the
// same bytes and so the same digest, which is what lets the rendered Nomad
// job fetch bundles by hash (artifact checksums) and lets the control
// plane store each blob once.
//
// Dependencies are not bundled: node_modules, __pycache__, vendor and
// dot-directories are left out, and the pool installs dependencies the
// language's own way (npm, pip, go build).
//
// Neighbours: package jobs names bundles in artifact blocks; the control
// plane stores and serves them.
package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// skip lists directory names never bundled.
var skip = map[string]bool{"node_modules": true, "__pycache__": true, "vendor": true}

// Digest is "sha256:<hex>" of a bundle's tar bytes.
type Digest string

// Hex returns the digest's hex part.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

// Write writes the bundle of src (a file or directory in fsys) to w as an
// uncompressed tar and returns its digest. Entries are sorted, owned by
// 0:0, dated at the epoch, and their mode is 0644 or 0755, so that only
// names, contents and the executable bit reach the digest.
func Write(fsys fs.FS, src string, w io.Writer) (Digest, error) {
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(w, h))
	fi, err := fs.Stat(fsys, src)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", src, err)
	}
	if !fi.IsDir() {
		if err := addFile(fsys, tw, src, path.Base(src), fi); err != nil {
			return "", err
		}
	} else {
		var files []string
		err := fs.WalkDir(fsys, src, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && p != src && (skip[e.Name()] || strings.HasPrefix(e.Name(), ".")) {
				return fs.SkipDir
			}
			if !e.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("bundle %s: %w", src, err)
		}
		sort.Strings(files)
		for _, p := range files {
			fi, err := fs.Stat(fsys, p)
			if err != nil {
				return "", fmt.Errorf("bundle %s: %w", src, err)
			}
			rel := strings.TrimPrefix(p, src+"/")
			if err := addFile(fsys, tw, p, rel, fi); err != nil {
				return "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("bundle %s: %w", src, err)
	}
	return Digest("sha256:" + hex.EncodeToString(h.Sum(nil))), nil
}

// Compute returns the digest of src's bundle without keeping the bytes.
func Compute(fsys fs.FS, src string) (Digest, error) {
	return Write(fsys, src, io.Discard)
}

func addFile(fsys fs.FS, tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("bundle %s: not a regular file; bundles hold only files and directories", p)
	}
	mode := int64(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     fi.Size(),
		Mode:     mode,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle %s: %w", p, err)
	}
	f, err := fsys.Open(p)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", p, err)
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", p, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("bundle %s: file changed while bundling", p)
	}
	return nil
}
