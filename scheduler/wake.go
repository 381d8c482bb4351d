package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/names"
)

// poolPath checks a pool name in a path.
var poolPath = pathRule{"pool", "pool name", names.Valid, names.RuleText}

// wakePool is POST /v1/projects/{name}/pools/{pool}/wake (leader): a
// gateway holds calls for a pool with no allocation. The leader's
// autoscaler takes it as a signal (autoscaler.Autoscaler.Wake): it scales
// the pool's group 0 -> 1 at once and keeps one allocation while wakes
// keep coming. Nothing is written to Raft; the scaling decision is.
func (s *Server) wakePool(w http.ResponseWriter, r *http.Request) {
	var req api.WakeRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("the wake request's body is not {\"held\": N}: %w", err))
			return
		}
	}
	a := s.scaler.Load()
	if a == nil {
		writeErr(w, http.StatusServiceUnavailable, errors.New("no autoscaler runs on the leader (started with -autoscale=false or without Nomad), so nothing wakes a pool scaled to zero: scale it with `nomad job scale`"))
		return
	}
	a.Wake(r.PathValue("name"), r.PathValue("pool"), req.Held)
	writeJSON(w, http.StatusOK, api.WakeResponse{Project: r.PathValue("name"), Pool: r.PathValue("pool")})
}
