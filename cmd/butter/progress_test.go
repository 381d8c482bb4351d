package main

import (
	"strings"
	"testing"
	"time"
)

// TestLiveLine: on a terminal, updates rewrite one line in place, no
// more often than liveEvery, a shorter line blanks what the longer left,
// and Done ends the line; elsewhere only Done's line is printed.
func TestLiveLine(t *testing.T) {
	var b strings.Builder
	clock := time.Unix(0, 0)
	l := newLiveLine(&b, true)
	l.now = func() time.Time { return clock }
	l.Update("uploading 1 MiB")
	clock = clock.Add(liveEvery / 2)
	l.Update("uploading 2 MiB") // too soon: not shown
	clock = clock.Add(liveEvery)
	l.Update("up 3")
	l.Done("uploaded")
	want := "\ruploading 1 MiB" + "\rup 3" + strings.Repeat(" ", len("uploading 1 MiB")-len("up 3")) + "\ruploaded" + "\n"
	if b.String() != want {
		t.Errorf("live output %q, want %q", b.String(), want)
	}

	b.Reset()
	p := newLiveLine(&b, false)
	p.Update("uploading 1 MiB")
	p.Done("uploaded")
	p.Done("uploaded again")
	if b.String() != "uploaded\nuploaded again\n" {
		t.Errorf("output in a pipe %q, want the final lines only", b.String())
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB", 3 << 40: "3072.0 GiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := fraction(1<<20, 4<<20); got != "1.0 MiB / 4.0 MiB (25%)" {
		t.Errorf("fraction = %q", got)
	}
}

// TestLiveReader: bytes read through the line's reader are shown with
// their total on a terminal, Clear blanks the line; in a pipe the reader
// is the original and nothing is printed.
func TestLiveReader(t *testing.T) {
	var b strings.Builder
	l := newLiveLine(&b, true)
	data := strings.Repeat("x", 2048)
	r := l.reader(strings.NewReader(data), "saving", int64(len(data)))
	buf := make([]byte, 2048)
	if n, _ := r.Read(buf); n != 2048 {
		t.Fatalf("read %d", n)
	}
	l.Clear()
	shown := "saving: 2.0 KiB / 2.0 KiB (100%)"
	if want := "\r" + shown + "\r" + strings.Repeat(" ", len(shown)) + "\r"; b.String() != want {
		t.Errorf("live output %q, want %q", b.String(), want)
	}

	b.Reset()
	p := newLiveLine(&b, false)
	src := strings.NewReader(data)
	if r := p.reader(src, "saving", 0); r != src {
		t.Error("in a pipe the reader is wrapped")
	}
	p.Clear()
	if b.Len() != 0 {
		t.Errorf("in a pipe: %q printed", b.String())
	}
}
