package routesync

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/butterfn/butter/api"

	"github.com/butterfn/butter/gateway"
)

var _ gateway.Waker = (*Sync)(nil)

// Wake asks the control plane to wake a project's pool that has no
// allocation (POST /v1/projects/{name}/pools/{pool}/wake, with the
// gateway's token, which needs read on the project): the leader's
// autoscaler scales it 0 -> 1. It is the gateway's Waker
// (gateway.WithWaker). A pool the control plane says is not asleep (404,
// 409) is a *gateway.WakeRefused.
func (s *Sync) Wake(ctx context.Context, project, pool string, held int) error {
	if err := s.client.Projects().Wake(ctx, project, pool, held); err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusConflict) {
			return &gateway.WakeRefused{Reason: se.Message}
		}
		return fmt.Errorf("wake pool %q of project %q through the control plane at %s: %w", pool, project, s.client.Address(), err)
	}
	return nil
}
