package routesync

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// memFS is a read-only file system in memory: paths (slash-separated, as
// fs.FS names them) to files or empty directories. Parent directories are
// implied by the paths under them. It is what a revision's tree is
// rebuilt in for spec.LoadFS, without touching the disk.
type memFS map[string]*memFile

// memFile is a file's content, or an empty directory.
type memFile struct {
	data []byte
	dir  bool
}

var (
	_ fs.FS        = memFS(nil)
	_ fs.ReadDirFS = memFS(nil)
	_ fs.StatFS    = memFS(nil)
)

func (m memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := m[name]; ok && !f.dir {
		return &openFile{info: info{name: path.Base(name), size: int64(len(f.data))}, Reader: bytes.NewReader(f.data)}, nil
	}
	entries, ok := m.children(name)
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &openDir{info: info{name: path.Base(name), dir: true}, entries: entries}, nil
}

func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := m[name]; ok && !f.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	entries, ok := m.children(name)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return entries, nil
}

func (m memFS) Stat(name string) (fs.FileInfo, error) {
	f, err := m.Open(name)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	defer f.Close()
	return f.Stat()
}

// children lists the directory dir's entries, sorted by name; ok is false
// when dir is neither the root, a directory entry, nor a parent of one.
func (m memFS) children(dir string) (entries []fs.DirEntry, ok bool) {
	prefix := dir + "/"
	if dir == "." {
		prefix = ""
	}
	_, ok = m[dir]
	ok = ok || dir == "."
	seen := map[string]info{}
	for p, f := range m {
		rest, under := strings.CutPrefix(p, prefix)
		if !under || rest == "" {
			continue
		}
		ok = true
		first, deeper, _ := strings.Cut(rest, "/")
		if deeper != "" || f.dir {
			seen[first] = info{name: first, dir: true}
		} else if _, known := seen[first]; !known {
			seen[first] = info{name: first, size: int64(len(f.data))}
		}
	}
	for _, i := range seen {
		entries = append(entries, fs.FileInfoToDirEntry(i))
	}
	sort.Slice(entries, func(a, b int) bool { return entries[a].Name() < entries[b].Name() })
	return entries, ok
}

// info describes a file or directory of a memFS.
type info struct {
	name string
	size int64
	dir  bool
}

func (i info) Name() string { return i.name }
func (i info) Size() int64  { return i.size }
func (i info) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.dir }
func (i info) Sys() any           { return nil }

type openFile struct {
	info info
	*bytes.Reader
}

func (f *openFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *openFile) Close() error               { return nil }

type openDir struct {
	info    info
	entries []fs.DirEntry
	off     int
}

func (d *openDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *openDir) Close() error               { return nil }
func (d *openDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}

// ReadDir follows fs.ReadDirFile: n <= 0 returns the rest at once.
func (d *openDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
