package butter_test

import (
	"context"
	"os"
	"testing"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// BenchmarkBatch measures a worker running BATCH frames of 256 events,
// each with the five CloudEvent headers, over pipes; ns/op is per event.
func BenchmarkBatch(b *testing.B) {
	b.Setenv("BUTTER_PROTOCOL", "2")
	toR, toW, _ := os.Pipe()
	fromR, fromW, _ := os.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- butter.ServeConn(toR, fromW, func(_ context.Context, in []byte) ([]byte, error) { return in, nil })
		fromW.Close()
	}()
	r := proto.NewReader(fromR)
	if f, err := r.Read(); err != nil || f.Type != proto.Hello {
		b.Fatal(f.Type, err)
	}
	w := proto.NewWriter(toW)
	const n = 256
	ev := proto.AppendBatchHead(nil, 0, n)
	for range n {
		ev = proto.AppendEventHead(ev, 5)
		for _, k := range []string{"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"} {
			ev = proto.AppendPair(ev, k, []byte("2026-11-23T17:51:40.123456789Z"))
		}
		ev = proto.AppendInput(ev, []byte("hello, butter"))
	}
	res := make([]proto.BatchResult, n)
	id := uint32(0)
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		id++
		if err := w.Write(proto.Batch, id, ev); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			f, err := r.Read()
			if err != nil {
				b.Fatal(err)
			}
			_, k, err := proto.ReadResults(f.Payload, res)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
	b.StopTimer()
	toW.Close()
	<-done
}
