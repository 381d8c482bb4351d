package scheduler

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/scheduler/fsm"
)

// Every gateway serves the routes of every project's active revision in
// one table, which a route on the gateway's own paths, or two routes the
// gateway cannot route apart, would break. Spec validation refuses both
// within a project; the leader refuses an activation that would bring
// them across projects, before it writes anything. Activations (deploys
// and rollbacks) hold activateMu from the check to the write, so that two
// projects deployed at once cannot both pass the check with the same
// route.
//
// A revision's routes are those it records ("METHOD /path -> target",
// as `butter deploy` derives them from the specs); a revision that
// records none is not checked.

// routeError is an activation refused for its routes, with the HTTP
// status to answer.
type routeError struct {
	status int
	msg    string
}

func (e *routeError) Error() string { return e.msg }

// checkRoutes says why routes (a revision of project) cannot be served
// beside the active revisions of the other projects in st, or that a
// route is on the gateway's own paths; nil when they can.
func checkRoutes(st *fsm.State, project string, routes []string) *routeError {
	for _, r := range routes {
		pattern := routePattern(r)
		if why := spec.GatewayRoute(pattern); why != "" {
			return &routeError{http.StatusBadRequest, fmt.Sprintf("route %q cannot be served: %s; route it under a path of your own", pattern, why)}
		}
	}
	others := make([]string, 0, len(st.Active))
	for p := range st.Active {
		if p != project {
			others = append(others, p)
		}
	}
	sort.Strings(others)
	for _, other := range others {
		rev := st.Revisions[other][st.Active[other]]
		if rev == nil {
			continue
		}
		for _, r := range routes {
			pattern := routePattern(r)
			for _, o := range rev.Routes {
				theirs := routePattern(o)
				if why := spec.RoutesConflict(pattern, theirs); why != "" {
					return &routeError{http.StatusConflict, fmt.Sprintf(
						"route %q conflicts with route %q of project %q (its active revision %s): %s, and every gateway serves all projects' routes in one table. Change the method or the path of one of them, or remove the route from project %q first",
						pattern, theirs, other, rev.ID, why, other)}
				}
			}
		}
	}
	return nil
}

// routePattern is the "METHOD /path" of a revision's route entry.
func routePattern(route string) string {
	pattern, _, _ := strings.Cut(route, " -> ")
	return strings.TrimSpace(pattern)
}
