package runtime

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/butterfn/butter/bundle"
)

// Java functions: the function's directory holds .java sources (compiled
// here, against the SDK, once per content digest, as Go functions are
// built) and any .jar files (its dependencies, or the function itself
// built elsewhere against the SDK), all on the class path. The worker is
// the SDK's dev.butter.Worker, which loads the handler class the spec
// names. javac, a JDK's, must be on the client: the driver reports it as
// the node attribute driver.butter.javac, and jobs require it.

// javaClassPath compiles the SDK (once) and the function's sources (once
// per digest) and returns the worker's class path.
func (s *SDKs) javaClassPath(ctx context.Context, fn *Function) (string, error) {
	if s.JavaSDK == "" {
		return "", fmt.Errorf("java function %s: this pool has no Java SDK", fn.Name)
	}
	sdkOut := filepath.Join(s.BuildDir, "java-sdk")
	sdkSources, err := javaFiles(s.JavaSDK, ".java")
	if err != nil || len(sdkSources) == 0 {
		return "", fmt.Errorf("java function %s: the Java SDK's sources in %s: %v", fn.Name, s.JavaSDK, err)
	}
	if err := s.javaBuild(ctx, "sdk", sdkOut, "", sdkSources, "the Java SDK"); err != nil {
		return "", err
	}
	digest, err := bundle.Compute(os.DirFS(fn.Dir), ".")
	if err != nil {
		return "", fmt.Errorf("java function %s: %w", fn.Name, err)
	}
	jars, err := javaFiles(fn.Dir, ".jar")
	if err != nil {
		return "", fmt.Errorf("java function %s: %w", fn.Name, err)
	}
	sources, err := javaFiles(fn.Dir, ".java")
	if err != nil {
		return "", fmt.Errorf("java function %s: %w", fn.Name, err)
	}
	cp := append([]string{sdkOut}, jars...)
	if len(sources) > 0 {
		out := filepath.Join(s.BuildDir, "java-"+digest.Hex())
		if err := s.javaBuild(ctx, digest.Hex(), out, strings.Join(cp, string(os.PathListSeparator)), sources, "function "+fn.Name); err != nil {
			return "", err
		}
		cp = append(cp, out)
	}
	if len(sources) == 0 && len(jars) == 0 {
		return "", fmt.Errorf("java function %s: %s has no .java source and no .jar", fn.Name, fn.Dir)
	}
	return strings.Join(cp, string(os.PathListSeparator)), nil
}

// javaBuild runs javac on sources into out once per key (and never again
// once out holds a finished build).
func (s *SDKs) javaBuild(ctx context.Context, key, out, classPath string, sources []string, what string) error {
	s.mu.Lock()
	if s.java == nil {
		s.java = map[string]*goBuild{}
	}
	b := s.java[key]
	if b == nil {
		b = &goBuild{}
		s.java[key] = b
	}
	s.mu.Unlock()
	b.once.Do(func() {
		done := filepath.Join(out, ".built")
		if _, err := os.Stat(done); err == nil {
			return
		}
		tmp := out + ".tmp" + strconv.Itoa(os.Getpid())
		_ = os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			b.err = err
			return
		}
		args := []string{"-d", tmp, "-encoding", "UTF-8", "-nowarn"}
		if classPath != "" {
			args = append(args, "-cp", classPath)
		}
		cmd := exec.CommandContext(ctx, "javac", append(args, sources...)...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(tmp)
			b.err = fmt.Errorf("javac of %s failed: %v\n%s", what, err, msg)
			return
		}
		if err := os.WriteFile(filepath.Join(tmp, ".built"), nil, 0o644); err != nil {
			b.err = err
			return
		}
		_ = os.RemoveAll(out)
		if err := os.Rename(tmp, out); err != nil {
			b.err = err
		}
	})
	if b.err != nil {
		s.mu.Lock()
		delete(s.java, key) // a later start may retry
		s.mu.Unlock()
	}
	return b.err
}

// javaFiles lists the files under dir ending in ext, sorted, absolute.
func javaFiles(dir, ext string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	err = filepath.WalkDir(abs, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && p != abs && strings.HasPrefix(e.Name(), ".") {
			return filepath.SkipDir // .butter and the like
		}
		if !e.IsDir() && strings.HasSuffix(e.Name(), ext) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// javaArgs are the JVM's arguments: tuned for a small, short-lived worker
// that should start fast (the C1 compiler only, the serial collector, the
// default class-data archive), the heap bounded by the function's memory.
func javaArgs(fn *Function, classPath string) []string {
	args := []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xss512k"}
	if fn.MemoryMiB > 0 {
		// The heap takes about three quarters of the limit; the rest is
		// the JVM's own (metaspace, code cache, threads).
		args = append(args, "-Xmx"+strconv.Itoa(max(fn.MemoryMiB*3/4, 16))+"m")
	}
	return append(args, "-cp", classPath, "dev.butter.Worker")
}
