package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// liveLine shows the progress of a long operation (an upload, a
// snapshot) as one line. On a terminal (live) the line is rewritten in
// place, at most every liveEvery, and ended by Done; elsewhere, Update
// prints nothing and Done prints the final line once, so that a pipe or a
// log file gets one line per operation and no control characters.
type liveLine struct {
	w    io.Writer
	live bool
	now  func() time.Time

	mu    sync.Mutex
	last  time.Time
	width int // of the line on screen, to blank what a shorter one leaves
}

const liveEvery = 100 * time.Millisecond

func newLiveLine(w io.Writer, live bool) *liveLine {
	return &liveLine{w: w, live: live, now: time.Now}
}

// Update shows s as the operation's state, when live and not shown
// within liveEvery.
func (l *liveLine) Update(s string) {
	if !l.live {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.now(); now.Sub(l.last) >= liveEvery {
		l.last = now
		l.show(s)
	}
}

// Done ends the operation with its final line s.
func (l *liveLine) Done(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live {
		l.show(s)
		fmt.Fprintln(l.w)
		l.width, l.last = 0, time.Time{}
		return
	}
	fmt.Fprintln(l.w, s)
}

// Clear blanks the line shown, if any, for the command's own last line.
func (l *liveLine) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live && l.width > 0 {
		fmt.Fprintf(l.w, "\r%s\r", strings.Repeat(" ", l.width))
		l.width, l.last = 0, time.Time{}
	}
}

// reader reports the bytes read through r on the line, with what
// describes them and their total (0 when unknown).
func (l *liveLine) reader(r io.Reader, what string, total int64) io.Reader {
	if !l.live {
		return r
	}
	return &liveReader{r: r, l: l, what: what, total: total}
}

type liveReader struct {
	r     io.Reader
	l     *liveLine
	what  string
	total int64
	n     int64
}

func (lr *liveReader) Read(p []byte) (int, error) {
	n, err := lr.r.Read(p)
	lr.n += int64(n)
	if lr.total > 0 {
		lr.l.Update(lr.what + ": " + fraction(lr.n, lr.total))
	} else {
		lr.l.Update(lr.what + ": " + byteSize(lr.n))
	}
	return n, err
}

func (l *liveLine) show(s string) {
	pad := ""
	if n := len(s); n < l.width {
		pad = strings.Repeat(" ", l.width-n)
	}
	fmt.Fprintf(l.w, "\r%s%s", s, pad)
	l.width = len(s)
}

// byteSize is n bytes in the unit that suits it (B, KiB, MiB, GiB).
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}

// fraction is sent of total as "12.0 MiB / 40.0 MiB (30%)".
func fraction(sent, total int64) string {
	pct := int64(100)
	if total > 0 {
		pct = sent * 100 / total
	}
	return fmt.Sprintf("%s / %s (%d%%)", byteSize(sent), byteSize(total), pct)
}
