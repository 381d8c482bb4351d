package scheduler

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// functionPath checks a function name in a path.
var functionPath = pathRule{"function", "function name", names.Valid, names.RuleText}

// getFunctions is GET /v1/projects/{name}/functions: the active
// revision's functions as the web UI draws them, each with its triggers,
// the streams it reads and writes, its dead-letter topics and its
// signals (scalestatus.go).
func (s *Server) getFunctions(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	project := r.PathValue("name")
	obs := s.observations()
	var rev *fsm.Revision
	var known bool
	var signals []api.PoolStatus
	s.fsm.Read(func(st *fsm.State) {
		_, known = st.Projects[project]
		if x := st.Revisions[project][st.Active[project]]; x != nil {
			cp := *x
			rev = &cp
			signals = poolStatusesWith(st, x, obs)
		}
	})
	if !known {
		writeErr(w, 404, fmt.Errorf("no project %q; deploy it with butter deploy", project))
		return
	}
	if rev == nil {
		writeErr(w, 404, fmt.Errorf("project %q has no active revision; deploy it with butter deploy", project))
		return
	}
	out, err := projectFunctions(rev, signals)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out.Stale = s.raft.State() != raft.Leader
	writeJSON(w, 200, out)
}

// projectFunctions reads a revision's functions from its job's pool
// configs, its routes and its timers.
func projectFunctions(rev *fsm.Revision, pools []api.PoolStatus) (*api.ProjectFunctions, error) {
	out := &api.ProjectFunctions{Project: rev.Project, Revision: rev.ID, Streams: []api.StreamInfo{}, Functions: []api.FunctionInfo{}}
	if len(rev.Job) == 0 {
		return out, nil // a revision recorded without a job runs nothing
	}
	cfgs, err := jobs.PoolConfigs(rev.Job)
	if err != nil {
		return nil, fmt.Errorf("revision %s of project %q: %w", rev.ID, rev.Project, err)
	}
	sig := map[string]api.FunctionSignals{}
	for _, p := range pools {
		if p.Signals == nil {
			continue
		}
		for _, f := range p.Signals.Functions {
			sig[f.Function] = f
		}
	}
	streams := map[string]bool{}
	for _, c := range cfgs {
		for _, t := range c.Topics {
			// The stream blocks' topics, not Butter's own (ticks, requests).
			name, ok := strings.CutPrefix(t.Name, rev.Project+".")
			if ok && names.Valid(name) && !streams[t.Name] {
				streams[t.Name] = true
				out.Streams = append(out.Streams, api.StreamInfo{Name: name, Topic: t.Name, Partitions: t.Partitions})
			}
		}
	}
	sort.Slice(out.Streams, func(i, j int) bool { return out.Streams[i].Name < out.Streams[j].Name })
	for _, c := range cfgs {
		for _, f := range c.Functions {
			fi := api.FunctionInfo{Function: f.Name, Pool: c.Pool, Runtime: f.Runtime, Output: f.Output, Emits: f.Emits, DeadLetters: deadLetterTopics(f)}
			for _, tr := range f.Streams {
				switch tr.Stream {
				case names.RequestTopic(rev.Project, f.Name):
					fi.Queued = true
				case names.TimerTopic(rev.Project, f.Name):
				default:
					fi.Inputs = append(fi.Inputs, tr.Stream)
				}
			}
			for _, t := range rev.Timers {
				if t.Topic == names.TimerTopic(rev.Project, f.Name) {
					fi.Schedules = append(fi.Schedules, t.Schedule)
				}
			}
			fi.Routes = functionRoutes(rev.Routes, f.Name)
			if fs, ok := sig[f.Name]; ok {
				fi.Signals = &fs
			}
			out.Functions = append(out.Functions, fi)
		}
	}
	sort.Slice(out.Functions, func(i, j int) bool { return out.Functions[i].Function < out.Functions[j].Function })
	return out, nil
}

// functionRoutes are the routes of a revision ("METHOD /path -> a | b")
// whose target is function, or a pipeline with it as a step.
func functionRoutes(routes []string, function string) []string {
	var out []string
	for _, r := range routes {
		pattern, target, ok := strings.Cut(r, " -> ")
		if !ok {
			continue
		}
		for _, step := range strings.Split(target, "|") {
			if name, _, _ := strings.Cut(strings.TrimSpace(step), " "); name == function {
				out = append(out, pattern)
				break
			}
		}
	}
	return out
}

// deadLetterTopics are where a function's failed events go: its
// dead_letter stream, or each consumed topic's ".dlq" (names), as the
// pool picks them (stream events, cron ticks, queued calls' requests).
func deadLetterTopics(f pool.FunctionConfig) []string {
	var out []string
	for _, tr := range f.Streams {
		t := f.DeadLetter
		if t == "" {
			t = names.DeadLetterTopic(tr.Stream)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
