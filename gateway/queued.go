package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/sdk/go/proto"
)

// Requester sends a request through the broker and waits for its reply:
// *broker.Requester implements it. It returns the reply's value, or an
// error; a *proto.Error carries the function's typed failure (Timeout
// when no reply came by the deadline).
type Requester interface {
	Call(ctx context.Context, topic string, key, value []byte, deadline time.Time) ([]byte, error)
}

// serveQueued serves queued and async routes whose body fits in one
// Kafka record (queuedBody; a larger one goes direct, oversize.go).
// Queued answers with the reply; async answers 202 Accepted at once, with
// the invocation's id and its Location to poll.
//
// A queued call's request is durable once Kafka acknowledged it: the
// function runs even if the gateway or the client goes away. The reply
// of an async call is kept in this gateway's memory only (WithResultTTL,
// WithMaxResults): poll the gateway that accepted the call.
//
// conv, when set, is the serialization the client asked for: a queued
// call's reply, JSON, is converted to it (serialize.go).
func (g *Gateway) serveQueued(ctx context.Context, w *recorder, rt *route, id string, body []byte, deadline time.Time, conv *codec, fail func(*CallError)) {
	if g.faas != nil {
		g.faas.count(rt.Project, rt.Function) // for GET /system/functions
	}
	if rt.Mode == ModeQueued {
		out, err := g.opts.requester.Call(ctx, rt.Topic, nil, body, deadline)
		if err != nil {
			fail(queuedError(ctx, rt, err))
			return
		}
		if conv != nil {
			if out, err = g.convertOutput(conv, out, rt.Function); err != nil {
				fail(err.(*CallError))
				return
			}
			w.Header().Set("Content-Type", conv.contentType)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(out)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		return
	}
	inv, ok := g.startAsync(rt, fail)
	if !ok {
		return
	}
	headers := broker.HeadersOf(ctx) // the request's, for its event
	go func() {
		defer g.wg.Done()
		actx, cancel := context.WithDeadline(g.ctx, deadline)
		defer cancel()
		actx = broker.WithHeaders(actx, headers)
		out, err := g.opts.requester.Call(actx, rt.Topic, nil, body, deadline)
		var ce *CallError
		if err != nil {
			ce = queuedError(actx, rt, err)
		}
		g.finishAsync(inv, rt, id, out, ce)
	}()
	acceptAsync(w, inv)
}

// startAsync records a new pending async invocation of rt and counts it
// in g.wg; the caller's goroutine calls g.wg.Done. It fails the call
// (503) when the gateway is closing or holds too many pending ones.
func (g *Gateway) startAsync(rt *route, fail func(*CallError)) (string, bool) {
	g.asyncMu.Lock()
	defer g.asyncMu.Unlock()
	if g.closed {
		fail(callError(http.StatusServiceUnavailable, "Unavailable", "the gateway is shutting down: retry on another one"))
		return "", false
	}
	inv, ok := g.results.add(rt.Project, rt.pattern)
	if !ok {
		fail(callError(http.StatusServiceUnavailable, "Unavailable", "%d async invocations are pending on this gateway, its limit: retry later", g.opts.maxResults))
		return "", false
	}
	g.wg.Add(1)
	g.metrics.setAsync(g.results.counts())
	return inv, true
}

// finishAsync records the outcome of async invocation inv.
func (g *Gateway) finishAsync(inv string, rt *route, id string, out []byte, ce *CallError) {
	g.results.finish(inv, out, ce)
	g.metrics.setAsync(g.results.counts())
	args := []any{"invocation", inv, "route", rt.pattern, "function", rt.Function, "request_id", id, "bytes", len(out)}
	if ce != nil {
		args = append(args, "error", ce.Error())
	}
	g.log.Info("async invocation done", args...)
}

// acceptAsync answers 202 Accepted for invocation inv.
func acceptAsync(w http.ResponseWriter, inv string) {
	loc := "/v1/invocations/" + inv
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": inv, "status": "pending", "location": loc})
}

// queuedError maps a Requester failure to what the client gets.
func queuedError(ctx context.Context, rt *route, err error) *CallError {
	var pe *proto.Error
	switch {
	case errors.As(err, &pe):
		return &CallError{Status: statusOf(pe.Type), Type: pe.Type, Message: poolMessage(pe.Message), Step: 0}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return callError(http.StatusGatewayTimeout, "Timeout", "no reply from %s on topic %s before the deadline", rt.Function, rt.Topic)
	case ctx.Err() != nil:
		return callError(http.StatusServiceUnavailable, "Canceled", "the call to %s was cancelled: %v", rt.Function, ctx.Err())
	}
	return callError(http.StatusServiceUnavailable, "Unavailable", "could not send the request to Kafka topic %s: %v", rt.Topic, err)
}

// serveInvocation serves GET /v1/invocations/{id}: 202 while the call is
// pending, then the reply (200) or the call's error with its status, for
// WithResultTTL after it completed; 404 for an unknown or expired id. The
// id is 128 random bits: whoever holds it may read the result.
func (g *Gateway) serveInvocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rid := requestID(r)
	w.Header().Set(HeaderRequestID, rid)
	inv, ok := g.results.get(id)
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "NotFound", rid, fmt.Sprintf("no invocation %s: it never existed here, or its result expired (results are kept %s after completion, on the gateway that accepted the call)", id, g.opts.resultTTL))
	case !inv.finished:
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Location", "/v1/invocations/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "pending"})
	case inv.err != nil:
		writeError(w, inv.err.Status, inv.err.Type, rid, inv.err.Message)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.body)
	}
}

// results holds async invocations: pending ones, and completed ones for
// ttl. It holds at most max; a new one evicts the oldest completed one,
// and is refused when all are pending.
type results struct {
	max int
	ttl time.Duration

	mu sync.Mutex
	m  map[string]*invocation
}

type invocation struct {
	project, route string
	created        time.Time
	done           time.Time
	finished       bool
	body           []byte
	err            *CallError
}

func newResults(max int, ttl time.Duration) *results {
	return &results{max: max, ttl: ttl, m: map[string]*invocation{}}
}

// add records a new pending invocation and returns its id.
func (s *results) add(project, route string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.expire(now)
	if len(s.m) >= s.max {
		var oldest string
		for id, inv := range s.m {
			if inv.finished && (oldest == "" || inv.done.Before(s.m[oldest].done)) {
				oldest = id
			}
		}
		if oldest == "" {
			return "", false
		}
		delete(s.m, oldest)
	}
	id := newID()
	s.m[id] = &invocation{project: project, route: route, created: now}
	return id, true
}

// expire drops completed results older than ttl; s.mu is held.
func (s *results) expire(now time.Time) {
	for id, inv := range s.m {
		if inv.finished && now.Sub(inv.done) > s.ttl {
			delete(s.m, id)
		}
	}
}

func (s *results) finish(id string, body []byte, err *CallError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.m[id]
	if inv == nil {
		return
	}
	inv.finished, inv.done, inv.body, inv.err = true, time.Now(), body, err
}

func (s *results) get(id string) (invocation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.m[id]
	if inv == nil || (inv.finished && time.Since(inv.done) > s.ttl) {
		return invocation{}, false
	}
	return *inv, true
}

func (s *results) counts() (pending, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inv := range s.m {
		if inv.finished {
			done++
		} else {
			pending++
		}
	}
	return pending, done
}
