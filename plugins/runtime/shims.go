package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Version managers (pyenv, asdf, mise, nodenv) put a shim named python3
// or node first on PATH: a script that finds the interpreter the
// directory and environment select and execs it. pyenv's costs about
// 250 ms per start here, five times Python's own start, and an instance
// the pool starts to take more load waits for it. So the first worker
// of a function says which interpreter runs it (HELLO's executable), and
// the function's next instances start that one directly, with its
// directory first on PATH as the shim's exec would put it.
//
// Only a PATH entry in a directory named "shims", the convention of these
// managers, is skipped: a wrapper script elsewhere may set flags or an
// environment of its own, and is run as it is. What the shim chose is
// kept per function directory and environment (what it chooses by: a
// .python-version file, PYENV_VERSION, ...) for the pool's life; a
// version changed under a running pool reaches new pools.

// interpreter returns what to run for name (node, python3) for fn: the
// interpreter a worker of fn reported past a shim, or name.
func (p *Process) interpreter(name string, fn *Function) string {
	if v, ok := p.interpreters.Load(shimKey(name, fn)); ok {
		return v.(string)
	}
	return name
}

// learn records the interpreter a worker of fn reported in its HELLO,
// when the worker was started as name and name on its PATH is a shim.
func (p *Process) learn(fn *Function, name, executable string) {
	if name != "node" && name != "python3" || !filepath.IsAbs(executable) {
		return
	}
	// exec.Command finds name on the pool's PATH.
	found, err := exec.LookPath(name)
	if err != nil {
		return
	}
	if abs, err := filepath.Abs(found); err == nil {
		found = abs
	}
	if filepath.Base(filepath.Dir(found)) != "shims" || found == executable {
		return
	}
	if st, err := os.Stat(executable); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return
	}
	p.interpreters.Store(shimKey(name, fn), executable)
}

// shimKey is what a shim chooses by: the command, the function's
// directory (a version file there or above) and its environment.
func shimKey(name string, fn *Function) string {
	env := make([]string, 0, len(fn.Env))
	for k, v := range fn.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return name + "\x00" + fn.Dir + "\x00" + strings.Join(env, "\x00")
}

// prependPath puts dir first on the PATH of env.
func prependPath(env []string, dir string) []string {
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if first, _, _ := strings.Cut(v, string(filepath.ListSeparator)); first == dir {
				return env
			}
			out := slices.Clone(env)
			out[i] = "PATH=" + dir + string(filepath.ListSeparator) + v
			return out
		}
	}
	return append(env, "PATH="+dir)
}
