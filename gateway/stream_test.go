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

// streamSize is the body TestStreamingBoundedMemory sends: 256 MiB, or
// 64 MiB under the race detector. BUTTER_GATEWAY_STREAM_MIB sets it in
// MiB; the acceptance run uses 1024 without -race.
func streamSize(t *testing.T) int64 {
	if v := os.Getenv("BUTTER_GATEWAY_STREAM_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("BUTTER_GATEWAY_STREAM_MIB=%q: want a number of MiB", v)
		}
		return n << 20
	}
	if raceEnabled {
		return 64 << 20
	}
	return 256 << 20
}

// maxHeapGrowth bounds the heap the process may add while a body of any
// size streams through it.
const maxHeapGrowth = 100 << 20

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
// wc -c on a real pool: the count must be right, and the heap of this
// process (client, gateway and pool together) must not grow with the
// body.
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

	if resp.StatusCode != 200 || strings.TrimSpace(string(out)) != strconv.FormatInt(size, 10) {
		t.Fatalf("wc -c of %d bytes through the gateway: %d %q", size, resp.StatusCode, out)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("streamed %d MiB in %s (%.0f MiB/s); HeapInuse %d MiB before, peak %d MiB (growth %d MiB); VmHWM %d -> %d MiB, VmRSS %d -> %d MiB",
		size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(),
		before.HeapInuse>>20, peak>>20, growth>>20, hwm>>10, procStatus("VmHWM")>>10, rss>>10, procStatus("VmRSS")>>10)
	if growth > maxHeapGrowth {
		t.Errorf("the heap grew by %d MiB while %d MiB streamed, want under %d MiB: something buffers the body", growth>>20, size>>20, maxHeapGrowth>>20)
	}
}
