package gateway_test

import (
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/gateway"
)

// streamSize is the body TestStreamingBoundedMemory sends: 256 MiB,
// with the race detector too, so that the body is many times the bounds
// below. BUTTER_GATEWAY_STREAM_MIB sets it in MiB (at least 128); the
// acceptance run uses 1024 without -race.
func streamSize(t *testing.T) int64 {
	if v := os.Getenv("BUTTER_GATEWAY_STREAM_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 128 {
			t.Fatalf("BUTTER_GATEWAY_STREAM_MIB=%q: want a number of MiB, at least 128 (8 times the bounds)", v)
		}
		return n << 20
	}
	return 256 << 20
}

// The bounds of TestStreamingBoundedMemory, whatever the body's size.
// maxAlloc bounds the bytes the process allocates, live or not, while
// the body streams: it is deterministic, and any copy of the body (a
// buffer that holds it, a fresh slice per chunk) allocates at least the
// body's size. Streaming allocates under 1 MiB for 256 MiB (measured
// with and without -race). maxHeapGrowth bounds the peak of the heap in
// use, sampled: a sample can miss a peak, so it is the second check.
const (
	maxAlloc      = 16 << 20
	maxHeapGrowth = 16 << 20
)

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// heapPeak samples HeapInuse until stop is called and returns the peak.
func heapPeak() (stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// procStatus reads a field of /proc/self/status ("VmHWM", "VmRSS") in
// KiB, or -1 where there is none.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// TestStreamingBoundedMemory sends a large body through the gateway to
// wc -c on a real pool: the count must be right, and this process
// (client, gateway and pool together) must neither allocate nor hold
// memory in proportion to the body. Nothing else runs in the process
// meanwhile (no test here is parallel), so what it allocates is the
// request's.
func TestStreamingBoundedMemory(t *testing.T) {
	size := streamSize(t)
	b := startPool(t, standardFns()...)
	_, url := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/count", Project: "test", Function: "wc", Timeout: 10 * time.Minute},
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	hwm, rss := procStatus("VmHWM"), procStatus("VmRSS")
	stop := heapPeak()
	start := time.Now()

	req, err := http.NewRequest("POST", url+"/count", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	peak := stop()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	if resp.StatusCode != 200 || strings.TrimSpace(string(out)) != strconv.FormatInt(size, 10) {
		t.Fatalf("wc -c of %d bytes through the gateway: %d %q", size, resp.StatusCode, out)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("streamed %d MiB in %s (%.0f MiB/s); allocated %.1f MiB (%d objects); HeapInuse %d MiB before, peak %d MiB (growth %d MiB); VmHWM %d -> %d MiB, VmRSS %d -> %d MiB",
		size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(),
		float64(alloc)/(1<<20), after.Mallocs-before.Mallocs,
		before.HeapInuse>>20, peak>>20, growth>>20, hwm>>10, procStatus("VmHWM")>>10, rss>>10, procStatus("VmRSS")>>10)
	if alloc > maxAlloc {
		t.Errorf("%d MiB allocated while %d MiB streamed, want under %d MiB: something copies the body", alloc>>20, size>>20, maxAlloc>>20)
	}
	if growth > maxHeapGrowth {
		t.Errorf("the heap grew by %d MiB while %d MiB streamed, want under %d MiB: something buffers the body", growth>>20, size>>20, maxHeapGrowth>>20)
	}
}
