package pool_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/plugins/pool"
)

// BenchmarkColdStart measures the first answer of a function from zero
// instances: each operation is a new pool hosting the echo function of a
// runtime with min_instances 0 (created and stopped outside the timing),
// and the time of its first pool.Invoke, which starts the instance (for
// go, node and python a worker process up to its HELLO; for exec nothing
// until the call forks cat) and runs the call. Run it with
// -benchtime=50x or more: each operation is one start.
//
// The files are in the page cache and the Go function is built before
// the timing, as on a node that has run the function before. The baseline
// is a fork and exec of echo, from this process, to its first byte; the
// interpreter variants start node, python3 and java on a program that
// writes one byte, the floor under those runtimes' starts.
func BenchmarkColdStart(b *testing.B) {
	b.Run("baseline", func(b *testing.B) { benchSpawn(b, "echo", "x") })
	sdks := harness.SDKs(b)
	for _, rt := range harness.Runtimes {
		b.Run(rt, func(b *testing.B) {
			ctx := context.Background()
			fc := harness.Echo(b, "echo", rt)
			newPool := func() *pool.Pool {
				p, err := pool.New(&pool.Config{Project: "bench", Pool: "default", Functions: []pool.FunctionConfig{fc}}, nil, pool.WithSDKs(sdks))
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Start(ctx); err != nil {
					b.Fatal(err)
				}
				return p
			}
			var out bytes.Buffer
			call := func(p *pool.Pool) {
				out.Reset()
				if err := p.Invoke(ctx, "echo", &pool.Call{Input: bytes.NewReader(benchEcho), Output: &out}); err != nil || !bytes.Equal(out.Bytes(), benchEcho) {
					b.Fatalf("%s echo: %q, %v", rt, out.Bytes(), err)
				}
			}
			// Build the Go function, fill the page cache.
			p := newPool()
			call(p)
			p.Close()
			var lat harness.Latencies
			for b.Loop() {
				b.StopTimer()
				p := newPool()
				b.StartTimer()
				t := time.Now()
				call(p)
				lat.Add(time.Since(t))
				b.StopTimer()
				p.Close()
				b.StartTimer()
			}
			lat.Report(b)
		})
	}
	// The interpreters alone, on a one-line program that writes a byte.
	dir := b.TempDir()
	script := func(name, src string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
		return path
	}
	js := script("first.js", "process.stdout.write('x')\n")
	py := script("first.py", "import sys; sys.stdout.write('x'); sys.stdout.flush()\n")
	b.Run("node-interpreter", func(b *testing.B) { benchSpawn(b, "node", js) })
	b.Run("python-interpreter", func(b *testing.B) { benchSpawn(b, "python3", py) })
	// The JVM with the Java runtime's flags (plugins/runtime/java.go) on a
	// class that writes a byte.
	src := script("First.java", "public class First { public static void main(String[] a) { System.out.print('x'); System.out.flush(); } }\n")
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		b.Fatalf("javac: %v\n%s", err, out)
	}
	b.Run("java-interpreter", func(b *testing.B) {
		benchSpawn(b, "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xss512k", "-cp", dir, "First")
	})
}

// benchEcho is the input of the pool benchmarks' calls.
var benchEcho = []byte("hello, butter")

// benchSpawn times a command from its fork to the first byte it writes
// to its standard output, once per operation; its exit is waited for
// outside the timing.
func benchSpawn(b *testing.B, name string, args ...string) {
	var lat harness.Latencies
	run := func() {
		cmd := exec.Command(name, args...)
		// The environment of an instance: PATH and HOME only
		// (NODE_EXTRA_CA_CERTS in this machine's, say, costs node 25ms).
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		var first [1]byte
		_, err = io.ReadFull(out, first[:])
		lat.Add(time.Since(t))
		if err != nil {
			b.Fatalf("%s wrote nothing: %v", name, err)
		}
		b.StopTimer()
		_, _ = io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		b.StartTimer()
	}
	run()
	lat = harness.Latencies{}
	for b.Loop() {
		run()
	}
	lat.Report(b)
}
