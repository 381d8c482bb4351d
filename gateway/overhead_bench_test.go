package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/plugins/pool"
)

// benchBody is the request body of the echo benchmarks.
var benchBody = []byte("hello, butter")

// BenchmarkOverhead measures one call of the Go echo function
// (bench/functions/echo-go, the process runtime), one at a time over
// keep-alive connections on 127.0.0.1, and reports each operation's p50
// and p99:
//
//   - baseline: the same handler called in-process;
//   - loopback-http: a plain net/http echo handler, for the cost of one
//     HTTP round trip on this machine;
//   - pipe-roundtrip: the body to cat and back over two pipes, the floor
//     under pool-invoke's round trip to its worker process;
//   - pool-invoke: pool.Invoke, the pool's Go API: the worker protocol
//     over pipes to the worker process, without HTTP;
//   - pool-http: the pool's invoke endpoint, POST /v1/invoke/echo;
//   - gateway: a route of the gateway, which forwards to that endpoint.
//
// The overhead a layer adds is its p50 minus the baseline's.
func BenchmarkOverhead(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline", func(b *testing.B) {
		var lat harness.Latencies
		for b.Loop() {
			t := time.Now()
			out, err := harness.Handle(ctx, benchBody)
			lat.Add(time.Since(t))
			if err != nil || !bytes.Equal(out, benchBody) {
				b.Fatalf("echo: %q, %v", out, err)
			}
		}
		lat.Report(b)
	})

	plain := harness.Serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		_, _ = w.Write(in)
	}))
	echo := harness.Echo(b, "echo", "go")
	echo.MinInstances = 1
	p := harness.StartPool(b, harness.SDKs(b), []pool.FunctionConfig{echo})
	poolAddr := harness.Serve(b, p.Handler())
	gwAddr := benchGateway(b, poolAddr)
	client := harness.Client(4)

	benchPosts(b, "loopback-http", client, "http://"+plain+"/")
	b.Run("pipe-roundtrip", func(b *testing.B) {
		// The floor under pool-invoke: the body to cat and back over
		// two pipes, read through the runtime's poller as the pool
		// reads its workers.
		cmd := exec.Command("cat")
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			_ = in.Close()
			_ = cmd.Wait()
		}()
		got := make([]byte, len(benchBody))
		benchCalls(b, func() error {
			if _, err := in.Write(benchBody); err != nil {
				return err
			}
			if _, err := io.ReadFull(out, got); err != nil {
				return err
			}
			return echoed("cat", got)
		})
	})
	b.Run("pool-invoke", func(b *testing.B) {
		var out bytes.Buffer
		benchCalls(b, func() error {
			out.Reset()
			if err := p.Invoke(ctx, "echo", &pool.Call{Input: bytes.NewReader(benchBody), Output: &out}); err != nil {
				return err
			}
			return echoed("invoke", out.Bytes())
		})
	})
	benchPosts(b, "pool-http", client, "http://"+poolAddr+"/v1/invoke/echo")
	benchPosts(b, "gateway", client, "http://"+gwAddr+"/echo")
}

// benchPosts runs a sub-benchmark posting benchBody to url one request at
// a time, checking the echo and recording each request's latency.
func benchPosts(b *testing.B, name string, client *http.Client, url string) {
	b.Run(name, func(b *testing.B) {
		benchCalls(b, func() error { return harness.Post(client, url, benchBody) })
	})
}

// benchCalls warms up with 100 calls (connections, instances, caches),
// then times each call of the benchmark's loop and reports their p50 and
// p99. A call's error, its check of the echo included, fails the
// benchmark.
func benchCalls(b *testing.B, call func() error) {
	for range 100 {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	var lat harness.Latencies
	for b.Loop() {
		t := time.Now()
		err := call()
		lat.Add(time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
	}
	lat.Report(b)
}

// echoed checks that got is benchBody.
func echoed(what string, got []byte) error {
	if !bytes.Equal(got, benchBody) {
		return fmt.Errorf("%s: %q, want %q", what, got, benchBody)
	}
	return nil
}

// benchGateway serves a gateway on 127.0.0.1 with routes POST /echo,
// POST /echo-node, ... to the functions echo, echo-node, ... of project
// "bench", pool "default", at poolAddr, with the defaults `butter
// gateway` runs with but its access log, and returns its address.
func benchGateway(b *testing.B, poolAddr string) string {
	b.Helper()
	res := gateway.NewStaticResolver()
	res.Set("bench", gateway.DefaultPool, poolAddr)
	g := gateway.New(res)
	b.Cleanup(g.Close)
	var routes []gateway.Route
	// A route per runtime of the benchmarks: echo (go), echo-<runtime>.
	for _, rt := range harness.Runtimes {
		name := "echo"
		if rt != "go" {
			name += "-" + rt
		}
		routes = append(routes, gateway.Route{Method: "POST", Path: "/" + name, Project: "bench", Function: name})
	}
	if err := g.SetRoutes(routes); err != nil {
		b.Fatal(err)
	}
	return harness.Serve(b, g)
}
