package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/butterfn/butter/names"
)

// HeaderMode is set on the answer of a queued or async route whose
// request went direct to a pool because its body was larger than a broker
// record may be (see queuedBody): "Butter-Mode: direct".
const HeaderMode = "Butter-Mode"

// Size-aware routing. A queued or async call travels as one Kafka record,
// which the broker bounds (WithQueuedMaxBody, 1 MiB by default, Kafka's
// own default). A body larger than that is not refused: the call goes
// direct to a pool of the function, as Funcatron's frontend does.
//
// Why direct rather than a blob whose reference the record carries: the
// function is hosted by a pool the gateway can already reach (the route
// names it), direct mode streams bodies of any size without buffering,
// and nothing new has to be stored, expired and secured (a blob store
// reachable by every pool, with a TTL, readable only by the function the
// record is for). The price is the queued guarantee: an oversized call is
// not durable, it runs only while the gateway that accepted it is up.
// docs/gateway.md says so.

// queuedBody reads the body of a queued or async call, up to the
// broker's record limit. It returns the body, or direct=true when the
// body is larger: in then yields the whole body from its start again. A
// body the client declared larger is not read at all.
func (g *Gateway) queuedBody(in *inputBody, declared int64) (body []byte, direct bool, e *CallError) {
	max := g.opts.queuedMaxBody
	if declared > max {
		return nil, true, nil
	}
	var buf bytes.Buffer
	_, err := io.Copy(&buf, io.LimitReader(in, max+1))
	if err != nil {
		if f := in.failure(); f != nil {
			return nil, false, f
		}
		return nil, false, callError(http.StatusBadRequest, "BadRequest", "reading the request body failed: %v", err)
	}
	if int64(buf.Len()) <= max {
		return buf.Bytes(), false, nil
	}
	in.unread(buf.Bytes())
	return nil, true, nil
}

// unread puts head, the bytes read so far, back before the rest of the
// body; the size limit counts them once.
func (b *inputBody) unread(head []byte) {
	b.r = io.MultiReader(bytes.NewReader(head), b.r)
	b.n -= int64(len(head))
}

// serveAsyncDirect serves an async call whose body is too large for a
// record: the body is spooled to an unlinked temporary file (the client
// is answered 202 only once its whole body is in), then the function is
// called direct in the background, and its output is kept as an async
// result, bounded like a reply record by WithQueuedMaxBody.
func (g *Gateway) serveAsyncDirect(w *recorder, rt *route, id string, base http.Header, contentType string, in *inputBody, deadline time.Time, fail func(*CallError)) {
	f, err := os.CreateTemp("", "butter-async-*")
	if err != nil {
		fail(callError(http.StatusServiceUnavailable, "Unavailable", "spooling the request body of %s failed: %v", rt.Function, err))
		return
	}
	_ = os.Remove(f.Name()) // the open file lives on; nothing is left behind
	n, err := io.Copy(f, in)
	if err != nil {
		_ = f.Close()
		if e := in.failure(); e != nil {
			fail(e)
			return
		}
		fail(callError(http.StatusServiceUnavailable, "Unavailable", "spooling the request body of %s failed: %v", rt.Function, err))
		return
	}
	inv, ok := g.startAsync(rt, fail)
	if !ok {
		_ = f.Close()
		return
	}
	go func() {
		defer g.wg.Done()
		defer f.Close()
		ctx, cancel := context.WithDeadline(g.ctx, deadline)
		defer cancel()
		c := &chain{g: g, project: rt.Project, steps: rt.steps, base: base, contentType: contentType,
			in: &inputBody{r: io.NewSectionReader(f, 0, n)}, length: n, deadline: deadline}
		out, ce := c.collect(ctx, g.opts.queuedMaxBody)
		g.finishAsync(inv, rt, id, out, ce)
	}()
	w.Header().Set(HeaderMode, ModeDirect)
	acceptAsync(w, inv)
}

// collect runs the chain and reads its output whole, up to max bytes.
func (c *chain) collect(ctx context.Context, max int64) ([]byte, *CallError) {
	resp, err := c.run(ctx)
	if err != nil {
		c.close()
		return nil, err.(*CallError)
	}
	defer c.close()
	var buf bytes.Buffer
	_, readErr := io.Copy(&buf, io.LimitReader(resp.Body, max+1))
	if f := c.failure(ctx, readErr); f != nil {
		return nil, f
	}
	if int64(buf.Len()) > max {
		return nil, callError(http.StatusBadGateway, "OutputTooLarge", "the output of %s is larger than the %d bytes an async result may hold: call the route in direct mode", c.steps[len(c.steps)-1].Function, max)
	}
	if t := resp.Trailer.Get(names.HeaderError); t != "" {
		e := trailerError(t)
		e.Step = len(c.steps) - 1
		return nil, e
	}
	return buf.Bytes(), nil
}
