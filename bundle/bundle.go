// Package bundle packs a function's source into a deterministic tar
// archive named by its content hash. The same source always gives the
// same bytes and so the same digest, which is what lets the rendered Nomad
// job fetch bundles by hash (artifact checksums) and lets the control
// plane store each blob once.
//
// A source's own node_modules, __pycache__, vendor and dot-directories
// are left out. A Node function's dependencies are installed at bundle
// time from its lockfile (package deps) and shipped as an Extra, so that
// pools never reach a registry.
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
	"os"
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

// Extra is a directory on disk shipped in a bundle under Name, such as a
// function's installed dependencies (package deps: node_modules).
type Extra struct {
	Name string
	Dir  string
}

// Write writes the bundle of src (a file or directory in fsys) to w as an
// uncompressed tar and returns its digest. Entries are sorted, owned by
// 0:0, dated at the epoch, and their mode is 0644 or 0755, so that only
// names, contents and the executable bit reach the digest.
func Write(fsys fs.FS, src string, w io.Writer) (Digest, error) {
	return WriteWith(fsys, src, nil, w)
}

// WriteWith is Write with extra directories: each one's files go in the
// bundle under its Name (replacing the source's own directory of that
// name, which is skipped anyway when it is node_modules), in the same
// deterministic order.
func WriteWith(fsys fs.FS, src string, extras []Extra, w io.Writer) (Digest, error) {
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(w, h))
	fi, err := fs.Stat(fsys, src)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", src, err)
	}
	type entry struct {
		fsys fs.FS
		path string // in fsys
		name string // in the bundle
	}
	var entries []entry
	if !fi.IsDir() {
		if len(extras) > 0 {
			return "", fmt.Errorf("bundle %s: a single-file source cannot carry %s", src, extras[0].Name)
		}
		entries = append(entries, entry{fsys, src, path.Base(src)})
	} else {
		replaced := map[string]bool{}
		for _, x := range extras {
			replaced[x.Name] = true
		}
		err := fs.WalkDir(fsys, src, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && p != src && (skip[e.Name()] || strings.HasPrefix(e.Name(), ".") || (path.Dir(p) == src && replaced[e.Name()])) {
				return fs.SkipDir
			}
			if !e.IsDir() {
				entries = append(entries, entry{fsys, p, strings.TrimPrefix(p, src+"/")})
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("bundle %s: %w", src, err)
		}
		for _, x := range extras {
			xfs := os.DirFS(x.Dir)
			err := fs.WalkDir(xfs, ".", func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if e.IsDir() && p != "." && strings.HasPrefix(e.Name(), ".") {
					return fs.SkipDir // such as node_modules/.bin: links for the command line
				}
				if !e.IsDir() {
					entries = append(entries, entry{xfs, p, x.Name + "/" + p})
				}
				return nil
			})
			if err != nil {
				return "", fmt.Errorf("bundle %s: %s: %w", src, x.Name, err)
			}
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, e := range entries {
		fi, err := fs.Stat(e.fsys, e.path)
		if err != nil {
			return "", fmt.Errorf("bundle %s: %w", src, err)
		}
		if err := addFile(e.fsys, tw, e.path, e.name, fi); err != nil {
			return "", err
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

// ComputeWith returns the digest of src's bundle with extras.
func ComputeWith(fsys fs.FS, src string, extras []Extra) (Digest, error) {
	return WriteWith(fsys, src, extras, io.Discard)
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
