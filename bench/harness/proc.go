package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Memory is what a process holds, in KiB: RSS counts every page it maps
// (shared libraries and the binary's text included, in every process
// that maps them), PSS divides each shared page among its sharers, so PSS
// adds up across processes and RSS does not.
type Memory struct{ RSS, PSS int }

// MemoryOf reads a process's VmRSS from /proc/<pid>/status and its Pss
// from /proc/<pid>/smaps_rollup.
func MemoryOf(pid int) (Memory, error) {
	var m Memory
	var err error
	if m.RSS, err = procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"); err != nil {
		return m, err
	}
	if m.PSS, err = procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:"); err != nil {
		return m, err
	}
	return m, nil
}

func procField(path, field string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			if f := strings.Fields(v); len(f) > 0 { // "1234 kB"
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("%s has no %s (a zombie?)", path, field)
}

// Descendants lists the processes descending from root, found by walking
// /proc and following parent pids.
func Descendants(root int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := slices.Clone(children[root])
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out, nil
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat
// (sysconf(_SC_CLK_TCK), 100 on Linux).
const clockTick = 10 * time.Millisecond

// CPUOf reads the user and system CPU time a process has used.
func CPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:])) // from field 3, state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, nil
}

// SelfCPU is the user and system CPU time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TreeCPU sums the CPU time of root's descendants.
func TreeCPU(root int) time.Duration {
	pids, err := Descendants(root)
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, pid := range pids {
		if d, err := CPUOf(pid); err == nil {
			sum += d
		}
	}
	return sum
}

// TreeMemory sums the memory of root's descendants and returns it with
// their number.
func TreeMemory(root int) (sum Memory, n int, err error) {
	pids, err := Descendants(root)
	if err != nil {
		return Memory{}, 0, err
	}
	for _, pid := range pids {
		m, err := MemoryOf(pid)
		if err != nil {
			continue // exited meanwhile
		}
		sum.RSS += m.RSS
		sum.PSS += m.PSS
		n++
	}
	return sum, n, nil
}
