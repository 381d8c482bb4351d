package api

import (
	"context"
	"net/http"
)

// Timer is a cron trigger the leader fires: each tick is produced as an
// event to Topic.
type Timer struct {
	ID string `json:"id"`
	// Project is set for timers derived from a project's cron triggers.
	Project string `json:"project,omitempty"`
	// Schedule is a cron expression (five fields, or six with seconds).
	Schedule string `json:"schedule"`
	// Timezone is an IANA zone; "" is UTC.
	Timezone string `json:"timezone,omitempty"`
	Topic    string `json:"topic"`
}

// Timers defines timers outside any project (a project's timers come from
// its active revision).
type Timers struct{ c *Client }

// Timers returns the timer endpoints.
func (c *Client) Timers() *Timers { return &Timers{c} }

// Put defines (or replaces) the timer t.ID and returns it as stored. A bad
// schedule or a missing topic is a 400 *StatusError.
func (t *Timers) Put(ctx context.Context, timer *Timer) (*Timer, error) {
	var out Timer
	if err := t.c.write(ctx, http.MethodPut, "/v1/timers/"+seg(timer.ID), timer, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get returns the timer id (a project's too) with its last firing; a 404
// *StatusError when there is none.
func (t *Timers) Get(ctx context.Context, id string) (*TimerStatus, error) {
	var out TimerStatus
	if _, err := t.c.query(ctx, "/v1/timers/"+seg(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TimerDeleteResponse answers DELETE /v1/timers/{id}.
type TimerDeleteResponse struct {
	Deleted string `json:"deleted"`
}

// Delete deletes the timer id, defined outside any project (a project's
// timers go with its cron triggers: a 400 *StatusError).
func (t *Timers) Delete(ctx context.Context, id string) error {
	return t.c.write(ctx, http.MethodDelete, "/v1/timers/"+seg(id), nil, &TimerDeleteResponse{})
}
