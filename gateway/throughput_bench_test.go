package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
)

// benchWrkDuration is how long each wrk run lasts.
const benchWrkDuration = 3 * time.Second

// BenchmarkThroughput drives the gateway with wrk at 1, 16 and 64
// connections, each request a POST of 13 bytes to the echo function of a
// runtime (go, exec, node, python), and reports requests per second with
// wrk's p50 and p99. The gateway and the pool run in this process, as
// `butter dev` runs them, and share the machine's cores with wrk.
//
// The baseline of each concurrency is a plain net/http echo handler on
// the same machine, in the same run: what one Go HTTP server answers
// here, before any platform work. Each run also reports the CPU time per
// request of this process (the gateway and the pool), of the workers
// (for exec, the forked cat processes are not counted: they are gone
// when it is read) and of wrk.
//
// The functions are sized as a project would size them for this load
// (an instances block): go and node run one instance taking 64 calls at
// once, python two instances of 8 threads, exec (cat, a fork per call)
// up to 64 calls at once. Every instance is started before wrk runs.
func BenchmarkThroughput(b *testing.B) {
	plain := harness.Serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		_, _ = w.Write(in)
	}))
	goFn := harness.Echo(b, "echo", "go")
	goFn.MinInstances, goFn.MaxInstances, goFn.Concurrency = 1, 1, 64
	execFn := harness.Echo(b, "echo-exec", "exec")
	execFn.MinInstances, execFn.MaxInstances, execFn.Concurrency = 1, 1, 64
	nodeFn := harness.Echo(b, "echo-node", "node")
	nodeFn.MinInstances, nodeFn.MaxInstances, nodeFn.Concurrency = 1, 1, 64
	pyFn := harness.Echo(b, "echo-python", "python")
	pyFn.MinInstances, pyFn.MaxInstances, pyFn.Concurrency = 2, 2, 8
	javaFn := harness.Echo(b, "echo-java", "java")
	javaFn.MinInstances, javaFn.MaxInstances, javaFn.Concurrency = 1, 1, 64
	p := harness.StartPool(b, harness.SDKs(b), []pool.FunctionConfig{goFn, execFn, nodeFn, pyFn, javaFn})
	gw := benchGateway(b, harness.Serve(b, p.Handler()))

	targets := []struct{ name, url string }{
		{"baseline", "http://" + plain + "/"},
		{"go", "http://" + gw + "/echo"},
		{"exec", "http://" + gw + "/echo-exec"},
		{"node", "http://" + gw + "/echo-node"},
		{"python", "http://" + gw + "/echo-python"},
		{"java", "http://" + gw + "/echo-java"},
	}
	client := harness.Client(1)
	for _, t := range targets {
		for range 50 { // every route answers before anything is measured
			if err := harness.Post(client, t.url, benchBody); err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
		}
	}
	for _, conns := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("c%d", conns), func(b *testing.B) {
			for _, t := range targets {
				b.Run(t.name, func(b *testing.B) {
					var r harness.WrkResult
					var self, workers time.Duration
					for b.Loop() {
						self0, workers0 := harness.SelfCPU(), harness.TreeCPU(os.Getpid())
						r = harness.Wrk(b, t.url, benchBody, conns, benchWrkDuration)
						self, workers = harness.SelfCPU()-self0, harness.TreeCPU(os.Getpid())-workers0
					}
					if r.Errors > 0 || r.NonOK > 0 {
						b.Fatalf("wrk saw %d socket errors and %d answers not 2xx:\n%s", r.Errors, r.NonOK, r.Output)
					}
					r.Report(b)
					// Where the 2 cores went, per request: this process
					// (the gateway and the pool, or the plain server), the
					// worker processes, and wrk.
					perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.Requests) }
					b.ReportMetric(perReq(self), "server-cpu-µs/req")
					b.ReportMetric(perReq(workers), "worker-cpu-µs/req")
					b.ReportMetric(perReq(r.CPU), "wrk-cpu-µs/req")
				})
			}
		})
	}
}
