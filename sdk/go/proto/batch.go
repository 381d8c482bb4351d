package proto

import (
	"encoding/binary"
	"fmt"
)

// Batches (protocol 2, docs/worker-protocol.md "Batches"): a BATCH frame
// carries many events of one ordered batch, each its metadata and its
// whole input, in a binary layout; RESULTS frames carry their outcomes in
// order. Both are read in place: decoding copies nothing.
//
//	BATCH    deadline: i64 BE (Unix ms, 0: none) | count: u32 BE | count × event
//	event    pairs: u16 BE | pairs × (klen: u16 BE | key | vlen: u32 BE | value) | ilen: u32 BE | input
//	RESULTS  first: u32 BE | n: u32 BE | n × result
//	result   0: u8 | olen: u32 BE | output
//	       | 1: u8 | tlen: u16 BE | type | mlen: u32 BE | message

// AppendBatchHead starts a BATCH payload of count events.
func AppendBatchHead(dst []byte, deadline int64, count int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(deadline))
	return binary.BigEndian.AppendUint32(dst, uint32(count))
}

// AppendEventHead starts an event of a BATCH payload with pairs metadata
// pairs: AppendPair must follow pairs times, then AppendInput.
func AppendEventHead(dst []byte, pairs int) []byte {
	return binary.BigEndian.AppendUint16(dst, uint16(pairs))
}

// AppendPair appends one metadata pair of an event.
func AppendPair(dst []byte, key string, value []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// AppendInput ends an event with its input.
func AppendInput(dst []byte, input []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(input)))
	return append(dst, input...)
}

// MaxPairs is the most metadata pairs an event of a batch carries; a key
// is at most MaxPairKey bytes.
const (
	MaxPairs   = 1<<16 - 1
	MaxPairKey = 1<<16 - 1
)

// Pair is one metadata pair of an event, as read from a BATCH payload.
type Pair struct {
	Key   []byte
	Value []byte
}

// BatchEvent is one event of a BATCH payload. Its slices point into the
// payload.
type BatchEvent struct {
	Meta  []Pair
	Input []byte
}

// BatchReader reads the events of a BATCH payload in place, one at a
// time: NewBatchReader checks the whole payload first, so Next cannot
// fail.
type BatchReader struct {
	d    decoder
	left int
}

// NewBatchReader checks a BATCH payload and returns its deadline, its
// event count and a reader of its events.
func NewBatchReader(p []byte) (deadline int64, count int, r *BatchReader, err error) {
	d := decoder{b: p}
	deadline = int64(d.u64())
	count = int(d.u32())
	if d.err != nil {
		return 0, 0, nil, fmt.Errorf("worker protocol: BATCH: %w", d.err)
	}
	r = &BatchReader{d: d, left: count}
	// Walk the events once, to refuse a bad payload before any runs.
	check := d
	for k := range count {
		for range int(check.u16()) {
			check.take(int(check.u16()))
			check.take(int(check.u32()))
		}
		check.take(int(check.u32()))
		if check.err != nil {
			return 0, 0, nil, fmt.Errorf("worker protocol: BATCH event %d: %w", k, check.err)
		}
	}
	if len(check.b) > 0 {
		return 0, 0, nil, fmt.Errorf("worker protocol: BATCH: %d bytes after the last event", len(check.b))
	}
	return deadline, count, r, nil
}

// Next reads the next event into ev, reusing ev.Meta's array, and
// reports false after the last.
func (r *BatchReader) Next(ev *BatchEvent) bool {
	if r.left == 0 {
		return false
	}
	r.left--
	d := &r.d
	ev.Meta = ev.Meta[:0]
	for range int(d.u16()) {
		k := d.bytes(int(d.u16()))
		ev.Meta = append(ev.Meta, Pair{Key: k, Value: d.bytes(int(d.u32()))})
	}
	ev.Input = d.bytes(int(d.u32()))
	return true
}

// ReadBatch decodes a whole BATCH payload.
func ReadBatch(p []byte) (deadline int64, events []BatchEvent, err error) {
	deadline, n, r, err := NewBatchReader(p)
	if err != nil {
		return 0, nil, err
	}
	events = make([]BatchEvent, n)
	for k := range events {
		r.Next(&events[k])
	}
	return deadline, events, nil
}

// ResultsHeadSize is the size of a RESULTS payload's head.
const ResultsHeadSize = 8

// PutResultsHead writes the head of a RESULTS payload into its first
// ResultsHeadSize bytes: n results from index first of the batch.
func PutResultsHead(p []byte, first, n int) {
	binary.BigEndian.PutUint32(p, uint32(first))
	binary.BigEndian.PutUint32(p[4:], uint32(n))
}

// AppendResultOK appends a successful result with its output.
func AppendResultOK(dst []byte, output []byte) []byte {
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(output)))
	return append(dst, output...)
}

// AppendResultError appends a failed result; it ends its batch.
func AppendResultError(dst []byte, e *Error) []byte {
	dst = append(dst, 1)
	typ := e.Type
	if len(typ) > 1<<16-1 {
		typ = typ[:1<<16-1]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(typ)))
	dst = append(dst, typ...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Message)))
	return append(dst, e.Message...)
}

// BatchResult is one result read from a RESULTS payload: Err is nil on
// success, and then Output (which points into the payload) is the output.
type BatchResult struct {
	Output []byte
	Err    *Error
}

// ReadResults decodes a RESULTS payload into dst from index first on,
// and returns first and the number of results. A result beyond dst is an
// error.
func ReadResults(p []byte, dst []BatchResult) (first, n int, err error) {
	d := decoder{b: p}
	first, n = int(d.u32()), int(d.u32())
	if d.err != nil {
		return 0, 0, fmt.Errorf("worker protocol: RESULTS: %w", d.err)
	}
	if first < 0 || n < 0 || first+n > len(dst) || first+n < first {
		return 0, 0, fmt.Errorf("worker protocol: RESULTS %d to %d of a batch of %d", first, first+n, len(dst))
	}
	for k := first; k < first+n; k++ {
		switch d.u8() {
		case 0:
			dst[k] = BatchResult{Output: d.bytes(int(d.u32()))}
		case 1:
			typ := string(d.bytes(int(d.u16())))
			dst[k] = BatchResult{Err: &Error{Type: typ, Message: string(d.bytes(int(d.u32())))}}
		default:
			if d.err == nil {
				d.err = fmt.Errorf("unknown status")
			}
		}
		if d.err != nil {
			return 0, 0, fmt.Errorf("worker protocol: RESULTS result %d: %w", k, d.err)
		}
	}
	if len(d.b) > 0 {
		return 0, 0, fmt.Errorf("worker protocol: RESULTS: %d bytes after the last result", len(d.b))
	}
	return first, n, nil
}

// decoder reads big-endian fields off b; the first short read sets err
// and makes every later read return zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("truncated: %d bytes wanted, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0xff
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// bytes returns the next n bytes; zero-length values are non-nil only
// when n > 0.
func (d *decoder) bytes(n int) []byte {
	if n == 0 {
		return nil
	}
	return d.take(n)
}
