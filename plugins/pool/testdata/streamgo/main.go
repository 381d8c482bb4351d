// Command streamgo is a streaming echo (butter.ServeStream): it copies its
// input to its output as it comes, and logs the worker's peak RSS when
// done. "fail" in the first bytes fails after some output.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
)

func handle(ctx context.Context, in io.Reader, out io.Writer) error {
	call := butter.FromContext(ctx)
	call.Header().Set("X-Streamed", "go")
	// A context call while the input backs up past the worker's limit:
	// its REPLY must get through the held-back reader.
	time.Sleep(300 * time.Millisecond)
	if err := call.Log("info", "go stream start"); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	n, err := io.ReadFull(in, buf[:4])
	if bytes.Equal(buf[:n], []byte("fail")) {
		_, _ = out.Write([]byte("partial"))
		return fmt.Errorf("%w: go stream refuses fail", butter.ErrPreconditionFailed)
	}
	if _, werr := out.Write(buf[:n]); werr != nil {
		return werr
	}
	if err == nil {
		if _, err = io.CopyBuffer(out, in, buf); err != nil {
			return err
		}
	} else if err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	// VmHWM, the peak RSS of this process image: getrusage's maxrss
	// would count the pool's RSS at the fork, which an exec does not
	// reset.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	hwm := ""
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return call.Log("info", "go stream maxrss_kib="+hwm)
}

func main() { butter.ServeStream(handle) }
