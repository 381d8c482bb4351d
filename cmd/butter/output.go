package main

import (
	"bytes"
	"sync"

	"github.com/hashicorp/cli"
)

// uiWriter is an io.Writer over a cli.Ui: each whole line written is one
// ui.Output, so a package that reports progress to an io.Writer prints
// through the command's UI. A last line without a newline waits for the
// next write.
type uiWriter struct {
	ui  cli.Ui
	mu  sync.Mutex
	buf []byte
}

func newUIWriter(ui cli.Ui) *uiWriter { return &uiWriter{ui: ui} }

func (w *uiWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.ui.Output(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
