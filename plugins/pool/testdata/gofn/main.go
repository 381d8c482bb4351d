// Command gofn is a test function whose behaviour the input selects:
// "exit" exits the worker, "hang" ignores its deadline, "leak" grows
// without bound, "slow" takes
// 300ms, "pid" answers the worker's pid, "params" answers the call's
// parameters as JSON, "count" counts the calls of its state key;
// "flaky-..." fails the first time the worker sees it, then is echoed
// upper-cased; "env:NAME" answers the variable's value, "read:PATH" the file's content
// (or the error reading it); "tick-..." takes 200µs and is echoed
// upper-cased, as is anything else, at once; "fold:N" folds N into its
// key's state (fold).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
)

var (
	flakyMu   sync.Mutex
	flakySeen = map[string]bool{}
)

func handle(ctx context.Context, in []byte) ([]byte, error) {
	if seq, ok := bytes.CutPrefix(in, []byte("fold:")); ok {
		return fold(ctx, string(seq))
	}
	if bytes.HasPrefix(in, []byte("flaky-")) {
		// Fails the first time this worker sees the input, then echoes.
		flakyMu.Lock()
		seen := flakySeen[string(in)]
		flakySeen[string(in)] = true
		flakyMu.Unlock()
		if !seen {
			return nil, errors.New("flaky: first attempt")
		}
		return bytes.ToUpper(in), nil
	}
	if bytes.HasPrefix(in, []byte("tick-")) {
		time.Sleep(200 * time.Microsecond)
		return bytes.ToUpper(in), nil
	}
	switch string(in) {
	case "exit":
		os.Exit(3)
	case "hang":
		select {}
	case "slow":
		time.Sleep(300 * time.Millisecond)
		return []byte("slow done"), nil
	case "pid":
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "fail":
		return nil, butter.ErrPreconditionFailed
	case "params":
		return json.Marshal(butter.FromContext(ctx).Params)
	case "count":
		st := butter.FromContext(ctx).State()
		var n int
		if _, err := st.Get(&n); err != nil {
			return nil, err
		}
		n++
		if err := st.Set(n); err != nil {
			return nil, err
		}
		return []byte(st.Key() + "=" + strconv.Itoa(n)), nil
	case "leak":
		// Grow without bound, touching every page, until something stops it.
		var hoard [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
	}
	if name, ok := strings.CutPrefix(string(in), "env:"); ok {
		return []byte(os.Getenv(name)), nil
	}
	if path, ok := strings.CutPrefix(string(in), "read:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return []byte("error: " + err.Error()), nil
		}
		return b, nil
	}
	return bytes.ToUpper(in), nil
}

// foldState is the state "fold:N" keeps per key: how many events, the sum
// and last of their N, and how many came out of order (N not above the
// last), which a repeated event does.
type foldState struct {
	N    int `json:"n"`
	Sum  int `json:"sum"`
	Last int `json:"last"`
	Bad  int `json:"bad"`
}

// fold applies event seq to its key's state and answers the new state.
func fold(ctx context.Context, seq string) ([]byte, error) {
	n, err := strconv.Atoi(seq)
	if err != nil {
		return nil, butter.ErrPreconditionFailed
	}
	st := butter.FromContext(ctx).State()
	s := foldState{Last: -1}
	if _, err := st.Get(&s); err != nil {
		return nil, err
	}
	if n <= s.Last {
		s.Bad++
	}
	s.N++
	s.Sum += n
	s.Last = n
	if err := st.Set(s); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

func main() { butter.Serve(handle) }
