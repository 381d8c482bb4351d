package pool_test

import (
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
)

// BenchmarkExecutionLog measures what recording a call in the execution
// log adds to it (issue 18's budget: ≤ 20 µs at p50): the Go echo through
// the pool's endpoint, one call at a time, without an execution log
// (baseline), and interleaved without and with one of the default three
// tiers (paired: the logged calls produce three records each to the
// embedded broker over TCP, without waiting for them).
func BenchmarkExecutionLog(b *testing.B) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dev.Close)
	plain := harness.Echo(b, "echo", "go")
	plain.MinInstances = 1
	logged := harness.Echo(b, "echo-logged", "go")
	logged.MinInstances = 1
	logged.Executions = &pool.ExecutionsConfig{Keep: []pool.ExecKeepConfig{{Age: "1h"}, {Age: "24h", OnePer: "1m"}, {Age: "720h", OnePer: "1h"}}}
	p := harness.StartPool(b, harness.SDKs(b), []pool.FunctionConfig{plain, logged})
	if err := p.StartLogs(dev.Config()); err != nil {
		b.Fatal(err)
	}
	addr := harness.Serve(b, p.Handler())
	client := harness.Client(4)
	body := []byte("hello, butter")
	// paired: calls of echo and echo-logged interleaved in one loop
	// (harness.Paired): its added-p50-ns is the budget's figure.
	b.Run("paired", func(b *testing.B) {
		url := ""
		harness.Paired(b, func(on bool) {
			url = "http://" + addr + "/v1/invoke/echo"
			if on {
				url += "-logged"
			}
		}, func() error { return harness.Post(client, url, body) })
	})
	for _, c := range []struct{ name, fn string }{{"baseline", "echo"}} {
		url := "http://" + addr + "/v1/invoke/" + c.fn
		b.Run(c.name, func(b *testing.B) {
			for range 100 {
				if err := harness.Post(client, url, body); err != nil {
					b.Fatal(err)
				}
			}
			var lat harness.Latencies
			for b.Loop() {
				t := time.Now()
				err := harness.Post(client, url, body)
				lat.Add(time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
			}
			lat.Report(b)
		})
	}
}
