package scheduler

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/butterfn/butter/acl"
	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// handler is the v1 API (with each route's ACL rule when Config.ACL is on;
// acl.go):
//
//	GET    /v1/agent/self                 this node's ID and Raft address                    public
//	GET    /v1/status/leader              the leader's ID                                    public
//	GET    /metrics                       Prometheus metrics: the autoscaler's decisions and  public
//	                                      signals, on the node that runs it (metrics.go)
//	GET    /ui/                           the web UI's static assets (ui.go); its data comes  public
//	                                      from the routes below, with the user's token
//	GET    /                              redirects to /ui/                                  public
//	GET    /v1/operator/raft/peers        the Raft configuration                             operator raft
//	DELETE /v1/operator/raft/peers/{id}   remove a server (leader)                           operator raft
//	GET    /v1/operator/snapshot          take a snapshot and stream it (leader)             operator snapshot
//	PUT    /v1/operator/snapshot          restore a snapshot: the whole state is replaced    operator snapshot
//	PUT    /v1/projects/{name}            create or update a project (leader)                deploy on {name}
//	GET    /v1/projects[?stale]           list projects (leader, or this node with ?stale)   read on some project; lists those
//	GET    /v1/projects/{name}[?stale]    the active revision, its deployment and timers     read on {name}
//	DELETE /v1/projects/{name}            delete a project: job stopped and purged, routes,  deploy on {name}
//	                                      timers, keys, consumer groups removed (leader; delete.go)
//	POST   /v1/projects/{name}/revisions  create (or re-activate) a revision (leader; 409     deploy on {name}
//	                                      when another project serves one of its routes)
//	GET    /v1/projects/{name}/revisions  list revisions with their deployment state         read on {name}
//	PUT    /v1/projects/{name}/quota      set the project's quota (leader; creates the project)   management
//	POST   /v1/projects/{name}/pools/{pool}/wake  a gateway holds calls for a pool with no      read on {name}
//	                                      allocation: the leader's autoscaler scales it 0 -> 1 (wake.go)
//	POST   /v1/projects/{name}/rollback   activate the revision before the active one        deploy on {name}
//	                                      (409 on a route conflict)
//	POST   /v1/projects/{name}/canary/promote  move a canary on, or promote it (leader)   deploy on {name}
//	POST   /v1/projects/{name}/canary/abort    end a canary: the stable revision stays    deploy on {name}
//	POST   /v1/projects/{name}/canary/report   a gateway's counts of a canary's calls     read on {name}
//	                                      (leader; canary.go)
//	GET    /v1/projects/{name}/revisions/{id}  one revision, with its spec files             read on {name}
//	GET    /v1/projects/{name}/functions  the active revision's functions, their streams    read on {name}
//	                                      and signals (functions.go)
//	GET    /v1/projects/{name}/functions/{function}/deadletters  the function's newest     read on {name}
//	                                      dead letters, from Kafka (kafka.go)
//	POST   /v1/projects/{name}/functions/{function}/deadletters/replay  write one back     deploy on {name}
//	                                      where it failed
//	GET    /v1/projects/{name}/logs       the project's log lines as server-sent events,    read on {name}
//	                                      followed with ?follow=true (kafka.go)
//	GET    /v1/projects/{name}/traces     the newest traces this node keeps (traces.go)     read on {name}
//	GET    /v1/projects/{name}/traces/{trace}  one trace's spans                             read on {name}
//	POST   /v1/traces                     OTLP/HTTP spans, kept in memory (traces.go)       deploy on the spans' projects
//	POST   /v1/projects/{name}/keys       create an API key (answered once; Raft keeps its   keys on {name}
//	                                      hash)
//	GET    /v1/keys                       API keys' hashes, projects and routes (gateways)   read on some project; lists those
//	DELETE /v1/keys/{hash}                revoke an API key                                  keys on the key's project
//	PUT    /v1/timers/{id}                define a timer outside any project                 management
//	GET    /v1/timers/{id}                a timer and its last firing                        management
//	DELETE /v1/timers/{id}                delete a timer outside any project (leader)        management
//	PUT    /v1/blobs/sha256/{hex}         store a blob on this server (checked against its   deploy on some project
//	                                      hash)
//	GET    /v1/blobs/sha256/{hex}         serve a blob, fetched from a peer when missing     read on some project, or ?butter_sig
//	POST   /v1/acl/bootstrap              the first management token, once (leader)          public
//	GET    /v1/acl/token/self             the calling token                                  any token
//	GET    /v1/acl/tokens                 list tokens (no secrets)                           management
//	POST   /v1/acl/tokens                 create a token (its secret is answered once)       management
//	DELETE /v1/acl/tokens/{accessor}      delete a token                                     management
//	GET    /v1/acl/policies               list policies                                      management
//	GET    /v1/acl/policies/{name}        one policy with its rules                          management
//	PUT    /v1/acl/policies/{name}        create or replace a policy (HCL rules, package acl) management
//	DELETE /v1/acl/policies/{name}        delete a policy                                    management
//
// Writes and consistent reads on a follower are forwarded to the leader.
// The reads of projects, revisions and keys answer X-Butter-Index and are
// blocking queries with ?index=N[&wait=30s] (see block).
//
// Bodies and answers are package api's types (every non-200 answers an
// api.ErrorResponse); the handlers convert them to the Raft log's types
// (package fsm) here, at the edge.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.HandleFunc(rt.pattern, s.obs.instrument(rt.pattern, traced(rt.pattern, s.guard(rt.rule, rt.h))))
	}
	return mux
}

// routes is the API's table: every route with the ACL rule guard checks
// (acl.go). handler registers the mux from it and only from it, so a route
// cannot exist without a rule; Routes lists it for tests and docs.
func (s *Server) routes() []route {
	req, blob := s.cfg.MaxRequestBytes, s.cfg.MaxBlobBytes
	return []route{
		{"GET /v1/agent/self", public, s.agentSelf},
		{"GET /v1/status/leader", public, s.statusLeader},
		{"GET /metrics", public, s.serveMetrics},
		{"GET /ui/", public, uiHandler()},
		{"GET /{$}", public, uiRedirect},
		{"GET /v1/operator/raft/peers", operator(acl.CapRaft), s.raftPeers},
		{"DELETE /v1/operator/raft/peers/{id}", operator(acl.CapRaft), checkPath(s.leaderOnly(s.removePeer), peerPath)},
		{"GET /v1/operator/snapshot", operator(acl.CapSnapshot), s.leaderOnly(s.snapshotSave)},
		{"PUT /v1/operator/snapshot", operator(acl.CapSnapshot), s.leaderOnly(s.snapshotRestore)},
		{"GET /v1/blobs/sha256/{hex}", blobRead, checkPath(s.serveBlob, blobPath)},
		{"PUT /v1/blobs/sha256/{hex}", someProject(acl.CapDeploy), checkPath(s.limitBody(blob, maxBlobSetting, s.storeBlob), blobPath)},
		{"PUT /v1/timers/{id}", management, checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.putTimer)), timerPath)},
		{"GET /v1/timers/{id}", management, checkPath(s.getTimer, timerPath)},
		{"DELETE /v1/timers/{id}", management, checkPath(s.leaderOnly(s.deleteTimer), timerPath)},
		{"PUT /v1/projects/{name}", project(acl.CapDeploy), checkPath(s.leaderOnly(s.putProject), projectPath)},
		{"GET /v1/projects", someProject(acl.CapRead), s.listProjects},
		{"GET /v1/projects/{name}", project(acl.CapRead), checkPath(s.getProject, projectPath)},
		{"DELETE /v1/projects/{name}", project(acl.CapDeploy), checkPath(s.leaderOnly(s.deleteProject), projectPath)},
		{"POST /v1/projects/{name}/revisions", project(acl.CapDeploy), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.createRevision)), projectPath)},
		{"GET /v1/projects/{name}/revisions", project(acl.CapRead), checkPath(s.listRevisions, projectPath)},
		{"GET /v1/projects/{name}/revisions/{id}", project(acl.CapRead), checkPath(s.getRevision, projectPath, revisionPath)},
		{"POST /v1/projects/{name}/rollback", project(acl.CapDeploy), checkPath(s.leaderOnly(s.rollback), projectPath)},
		{"POST /v1/projects/{name}/canary/promote", project(acl.CapDeploy), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.promoteCanary)), projectPath)},
		{"POST /v1/projects/{name}/canary/abort", project(acl.CapDeploy), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.abortCanary)), projectPath)},
		{"POST /v1/projects/{name}/canary/report", project(acl.CapRead), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.canaryReport)), projectPath)},
		{"GET /v1/projects/{name}/functions", project(acl.CapRead), checkPath(s.getFunctions, projectPath)},
		{"GET /v1/projects/{name}/functions/{function}/deadletters", project(acl.CapRead), checkPath(s.listDeadLetters, projectPath, functionPath)},
		{"POST /v1/projects/{name}/functions/{function}/deadletters/replay", project(acl.CapDeploy), checkPath(s.limitBody(req, maxRequestSetting, s.replayDeadLetter), projectPath, functionPath)},
		{"GET /v1/projects/{name}/logs", project(acl.CapRead), checkPath(s.followLogs, projectPath)},
		{"GET /v1/projects/{name}/traces", project(acl.CapRead), checkPath(s.listTraces, projectPath)},
		{"GET /v1/projects/{name}/traces/{trace}", project(acl.CapRead), checkPath(s.getTrace, projectPath, tracePath)},
		{"POST /v1/traces", someProject(acl.CapDeploy), s.limitBody(req, maxRequestSetting, s.receiveSpans)},
		{"POST /v1/projects/{name}/pools/{pool}/wake", project(acl.CapRead), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.wakePool)), projectPath, poolPath)},
		{"PUT /v1/projects/{name}/quota", management, checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.putQuota)), projectPath)},
		{"POST /v1/projects/{name}/keys", project(acl.CapKeys), checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.createKey)), projectPath)},
		{"GET /v1/keys", someProject(acl.CapRead), s.listKeys},
		{"DELETE /v1/keys/{hash}", keysProject(acl.CapKeys), checkPath(s.leaderOnly(s.revokeKey), keyPath)},
		{"POST /v1/acl/bootstrap", public, s.leaderOnly(s.aclBootstrap)},
		{"GET /v1/acl/token/self", anyToken, s.aclTokenSelf},
		{"GET /v1/acl/tokens", management, s.leaderOnly(s.aclTokenList)},
		{"POST /v1/acl/tokens", management, s.limitBody(req, maxRequestSetting, s.leaderOnly(s.aclTokenCreate))},
		{"DELETE /v1/acl/tokens/{accessor}", management, checkPath(s.leaderOnly(s.aclTokenDelete), accessorPath)},
		{"GET /v1/acl/policies", management, s.leaderOnly(s.aclPolicyList)},
		{"GET /v1/acl/policies/{name}", management, checkPath(s.leaderOnly(s.aclPolicyGet), policyPath)},
		{"PUT /v1/acl/policies/{name}", management, checkPath(s.limitBody(req, maxRequestSetting, s.leaderOnly(s.aclPolicyApply)), policyPath)},
		{"DELETE /v1/acl/policies/{name}", management, checkPath(s.leaderOnly(s.aclPolicyDelete), policyPath)},
	}
}

func (s *Server) agentSelf(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, api.AgentSelf{ID: s.cfg.HTTPAddr, RaftAddr: s.cfg.RaftAddr})
}

func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) {
	_, id := s.raft.LeaderWithID()
	writeJSON(w, 200, api.LeaderResponse{Leader: string(id)})
}

func (s *Server) raftPeers(w http.ResponseWriter, r *http.Request) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeErr(w, 500, err)
		return
	}
	_, leader := s.raft.LeaderWithID()
	out := []api.RaftServer{}
	for _, sv := range f.Configuration().Servers {
		out = append(out, api.RaftServer{ID: string(sv.ID), Address: string(sv.Address), Leader: sv.ID == leader, Suffrage: sv.Suffrage.String()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, 200, out)
}

func (s *Server) removePeer(w http.ResponseWriter, r *http.Request) {
	if err := s.raft.RemoveServer(raft.ServerID(r.PathValue("id")), 0, 5*time.Second).Error(); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.PeerRemoveResponse{Removed: r.PathValue("id")})
}

// snapshotSave takes a snapshot now (which also compacts the log) and
// streams it: `butter operator snapshot save` writes it to a file.
func (s *Server) snapshotSave(w http.ResponseWriter, r *http.Request) {
	// Raft refuses a snapshot while a configuration change (a peer just
	// added or removed) is not yet applied to the FSM: a barrier waits
	// for every committed entry to be applied first.
	if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
		writeErr(w, 503, fmt.Errorf("wait for the log to be applied before the snapshot: %w; try again", err))
		return
	}
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		writeErr(w, 500, err)
		return
	}
	var meta *raft.SnapshotMeta
	var rc io.ReadCloser
	var err error
	if f.Error() == nil {
		meta, rc, err = f.Open()
	} else {
		meta, rc, err = s.latestSnapshot()
	}
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(api.HeaderSnapshotIndex, strconv.FormatUint(meta.Index, 10))
	_, _ = io.Copy(w, rc)
}

// snapshotRestore restores a saved snapshot: the whole cluster's state is
// replaced.
func (s *Server) snapshotRestore(w http.ResponseWriter, r *http.Request) {
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: r.ContentLength}
	if err := s.raft.Restore(meta, r.Body, time.Minute); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.SnapshotRestoreResponse{Restored: "ok"})
}

func (s *Server) putTimer(w http.ResponseWriter, r *http.Request) {
	var in api.Timer
	if !s.decodeBody(w, r, "timer body", &in) {
		return
	}
	if in.ID != "" && in.ID != r.PathValue("id") {
		writeErr(w, 400, fmt.Errorf("timer body: id %q differs from the path's %q", clip(in.ID), r.PathValue("id")))
		return
	}
	in.ID = r.PathValue("id")
	if in.Project != "" {
		writeErr(w, 400, fmt.Errorf("timer %s: project %q: a project's timers come from its revisions, not from PUT /v1/timers", in.ID, clip(in.Project)))
		return
	}
	if err := checkTimer("timer "+in.ID, &in); err != nil {
		writeErr(w, 400, err)
		return
	}
	t := fsmTimer(&in)
	if err := s.Apply(fsm.TimerPutType, t); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, apiTimer(t))
}

// timer returns the timer id and its last firing.
func (s *Server) timer(id string) (t *fsm.Timer, last time.Time) {
	s.fsm.Read(func(st *fsm.State) {
		if d := st.TimerDefs[id]; d != nil {
			cp := *d
			t, last = &cp, st.Timers[id]
		}
	})
	return t, last
}

func (s *Server) getTimer(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	t, last := s.timer(r.PathValue("id"))
	if t == nil {
		writeErr(w, 404, fmt.Errorf("no timer %q; define one with PUT /v1/timers/{id}", r.PathValue("id")))
		return
	}
	writeJSON(w, 200, api.TimerStatus{Timer: *apiTimer(t), LastFired: last})
}

func (s *Server) deleteTimer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, _ := s.timer(id)
	switch {
	case t == nil:
		writeErr(w, 404, fmt.Errorf("no timer %q", id))
		return
	case t.Project != "":
		writeErr(w, 400, fmt.Errorf("timer %s belongs to project %q: a project's timers come from its revisions; remove the cron trigger from its spec and deploy", id, t.Project))
		return
	}
	if err := s.Apply(fsm.TimerDeleteType, t); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.TimerDeleteResponse{Deleted: id})
}

func (s *Server) putProject(w http.ResponseWriter, r *http.Request) {
	if s.isDeleting(w, r.PathValue("name")) {
		return
	}
	p := fsm.Project{Name: r.PathValue("name"), Created: time.Now().UTC()}
	if err := s.Apply(fsm.ProjectUpsertType, p); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.Project{Name: p.Name, Created: p.Created})
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	out := api.ProjectList{Projects: []string{}, Stale: s.raft.State() != raft.Leader}
	a := aclFrom(r)
	s.fsm.Read(func(st *fsm.State) {
		for n := range st.Projects {
			if a == nil || a.AllowProject(n, acl.CapRead) {
				out.Projects = append(out.Projects, n)
			}
		}
	})
	sort.Strings(out.Projects)
	writeJSON(w, 200, out)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	st, ok := s.projectStatus(r.PathValue("name"))
	if !ok {
		writeErr(w, 404, fmt.Errorf("no project %q; deploy it with butter deploy", r.PathValue("name")))
		return
	}
	writeJSON(w, 200, st)
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	out := []api.RevisionListStub{}
	s.fsm.Read(func(st *fsm.State) {
		for _, rev := range st.RevisionList(r.PathValue("name")) {
			out = append(out, api.RevisionListStub{Revision: apiRevision(rev, false), Active: st.Active[rev.Project] == rev.ID})
		}
	})
	writeJSON(w, 200, out)
}

func (s *Server) getRevision(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	var rev *api.Revision
	s.fsm.Read(func(st *fsm.State) {
		if x := st.Revisions[r.PathValue("name")][r.PathValue("id")]; x != nil {
			cp := apiRevision(x, true)
			rev = &cp
		}
	})
	if rev == nil {
		writeErr(w, 404, fmt.Errorf("project %q has no revision %q; butter revisions %s lists them", r.PathValue("name"), r.PathValue("id"), r.PathValue("name")))
		return
	}
	writeJSON(w, 200, rev)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	if !s.read(w, r) {
		return
	}
	out := []api.APIKey{}
	a := aclFrom(r)
	s.fsm.Read(func(st *fsm.State) {
		for _, k := range st.APIKeys {
			if a == nil || a.AllowProject(k.Project, acl.CapRead) {
				out = append(out, apiKey(k))
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	writeJSON(w, 200, out)
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	if err := s.Apply(fsm.APIKeyDeleteType, fsm.APIKey{Hash: r.PathValue("hash")}); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.KeyRevokeResponse{Deleted: r.PathValue("hash")})
}

// read prepares a read: it answers on this node (local) after any
// blocking-query wait (block), or says no when it has answered r already.
func (s *Server) read(w http.ResponseWriter, r *http.Request) bool {
	return s.local(w, r) && s.block(w, r)
}

// local says whether this node answers the read r itself: it leads, or
// the client allowed a stale answer (?stale). Otherwise it forwards r to
// the leader and says no.
func (s *Server) local(w http.ResponseWriter, r *http.Request) bool {
	if _, stale := r.URL.Query()["stale"]; stale {
		return true
	}
	if s.raft.State() == raft.Leader {
		if err := s.leaderCaughtUp(); err != nil {
			writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("this node was elected leader and has not yet applied its predecessor's writes (%v); retry, or read with ?stale", err))
			return false
		}
		return true
	}
	s.forward(w, r)
	return false
}

// leaderCaughtUp makes sure a leader has applied every entry committed
// before its term before it answers a read: a newly elected leader holds
// them in its log but may not have applied them to its state yet. It runs
// a Raft barrier once per term; the reads after it in the term answer at
// once.
func (s *Server) leaderCaughtUp() error {
	term := s.raft.CurrentTerm()
	s.barrierMu.Lock()
	defer s.barrierMu.Unlock()
	if s.barrierTerm == term {
		return nil
	}
	if err := s.raft.Barrier(5 * time.Second).Error(); err != nil {
		return err
	}
	s.barrierTerm = term
	return nil
}

// Blocking queries wait at most this long: the default of ?wait, and its
// bound.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// block serves a blocking query and sets the read's api.QueryMeta
// headers. With ?index=N, it waits until the state's Raft index passes N
// (any write, or a snapshot restore), until ?wait (a Go duration; default
// and bound above) runs out, or until the client goes away; then the
// handler reads the state as it is. The index answered is taken before
// that read, so the read may be newer than it, never older: a client that
// waits on it may wake once for a change it saw, but never misses one.
//
// It answers 400 and says no for a malformed ?index or ?wait.
func (s *Server) block(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if v := q.Get("index"); v != "" {
		after, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErr(w, 400, fmt.Errorf("index %q: want a Raft index", v))
			return false
		}
		wait := defaultWait
		if v := q.Get("wait"); v != "" {
			if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
				writeErr(w, 400, fmt.Errorf("wait %q: want a duration such as 30s", v))
				return false
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
		// Running out of time is an answer too: the state as it is.
		_, _ = s.fsm.WaitIndex(ctx, after)
		cancel()
	}
	_, leader := s.raft.LeaderWithID()
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(s.fsm.Index(), 10))
	w.Header().Set(api.HeaderKnownLeader, strconv.FormatBool(leader != ""))
	return true
}

// leaderOnly runs h on the leader and forwards the request from a follower.
func (s *Server) leaderOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.raft.State() == raft.Leader {
			h(w, r)
			return
		}
		s.forward(w, r)
	}
}

func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	_, id := s.raft.LeaderWithID()
	if id == "" || string(id) == s.cfg.HTTPAddr {
		writeErr(w, http.StatusServiceUnavailable, ErrNoLeader)
		return
	}
	if r.Header.Get("X-Butter-Forwarded") != "" {
		// One hop only: a stale view of the leader must not loop.
		writeErr(w, http.StatusServiceUnavailable, errors.New("forwarded to a node that is not the leader"))
		return
	}
	r.Header.Set("X-Butter-Forwarded", s.cfg.HTTPAddr)
	target := &url.URL{Scheme: s.scheme(), Host: string(id)}
	proxy := httputil.NewSingleHostReverseProxy(target)
	if s.tls != nil {
		proxy.Transport = s.tls.peers // the node's certificate as its client certificate
	}
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		var mbe *http.MaxBytesError
		if lim, ok := r.Context().Value(bodyLimitKey{}).(*bodyLimit); ok && errors.As(err, &mbe) {
			s.tooLarge(w, r, lim)
			return
		}
		writeErr(w, http.StatusServiceUnavailable, err)
	}
	proxy.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorResponse{Error: err.Error()})
}

// createRevision records a revision and makes it the project's active one.
// A revision that already exists (the same content) is only activated. A
// revision with a route on the gateway's own paths (400) or one another
// project's active revision serves (409) is refused, and nothing is
// recorded (routes.go).
func (s *Server) createRevision(w http.ResponseWriter, r *http.Request) {
	var req api.RevisionCreateRequest
	if !s.decodeBody(w, r, "revision body", &req) {
		return
	}
	if req.ID == "" {
		writeErr(w, 400, errors.New("revision body: id is empty: a revision needs an id (its content hash)"))
		return
	}
	if err := checkRevision(r.PathValue("name"), &req); err != nil {
		writeErr(w, 400, err)
		return
	}
	if s.isDeleting(w, r.PathValue("name")) {
		return
	}
	if len(req.Job) > 0 {
		if _, err := jobs.Check(req.Job, jobExpect(r.PathValue("name"), req.ID, req.Bundles)); err != nil {
			writeErr(w, 400, fmt.Errorf("revision body: %w", err))
			return
		}
	}
	rev := fsmRevision(&req)
	rev.Project = r.PathValue("name")
	if req.Canary != nil && len(req.Job) == 0 {
		writeErr(w, 400, fmt.Errorf("revision body: canary: revision %s has no job: a canary runs beside the serving revision in Nomad, so it needs the control plane's deployer", rev.ID))
		return
	}
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	var exists, known bool
	var refused *routeError
	var quota *fsm.Quota
	var canary *fsm.Canary
	canaryCode, canaryWhy := 0, ""
	s.fsm.Read(func(st *fsm.State) {
		if req.Canary != nil {
			if canaryCode, canaryWhy = canaryRefused(st, rev.Project, &rev); canaryWhy == "" {
				var err error
				if canary, err = canaryFromRequest(req.Canary, rev.ID, st.Active[rev.Project], time.Now().UTC()); err != nil {
					canaryCode, canaryWhy = 400, "revision body: "+err.Error()
				}
			}
		}
		var p *fsm.Project
		if p, known = st.Projects[rev.Project]; known && p.Quota != nil {
			q := *p.Quota
			quota = &q
		}
		routes := rev.Routes
		if old := st.Revisions[rev.Project][rev.ID]; old != nil {
			exists, routes = true, old.Routes
		}
		refused = checkRoutes(st, rev.Project, routes)
	})
	if refused != nil {
		writeErr(w, refused.status, fmt.Errorf("revision %s of project %q: %w", rev.ID, rev.Project, refused))
		return
	}
	if canaryWhy != "" {
		writeErr(w, canaryCode, errors.New(canaryWhy))
		return
	}
	if err := checkRevisionQuota(rev.Project, quota, rev.Job); err != nil {
		writeErr(w, 422, fmt.Errorf("revision %s of project %q: %w", rev.ID, rev.Project, err))
		return
	}
	if !known {
		if err := s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: rev.Project, Created: time.Now().UTC()}); err != nil {
			writeErr(w, 500, err)
			return
		}
	}
	if !exists {
		rev.Created = time.Now().UTC()
		if err := s.Apply(fsm.RevisionCreateType, rev); err != nil {
			writeErr(w, 500, err)
			return
		}
	}
	reason := "deployed"
	if rev.Author != "" {
		reason += " by " + rev.Author
	}
	if canary != nil {
		reason += fmt.Sprintf(" as a canary beside revision %s", canary.Stable)
		canary.Message = "placing the canary allocations beside revision " + canary.Stable + "; every call goes to it until they are healthy"
		if err := s.Apply(fsm.CanaryPutType, fsm.CanaryPut{Project: rev.Project, Canary: *canary, Activate: true, Reason: reason}); err != nil {
			writeErr(w, 500, err)
			return
		}
	} else if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: rev.Project, Revision: rev.ID, Reason: reason}); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.obs.activations.WithLabelValues(rev.Project, "deploy").Inc()
	writeJSON(w, 200, api.RevisionCreateResponse{Project: rev.Project, Revision: rev.ID, New: !exists, Deployer: s.cfg.Nomad != nil})
}

// rollback activates the revision created before the active one.
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	if s.isDeleting(w, project) {
		return
	}
	s.activateMu.Lock()
	defer s.activateMu.Unlock()
	var target, active string
	var refused *routeError
	var overQuota error
	s.fsm.Read(func(st *fsm.State) {
		active = st.Active[project]
		list := st.RevisionList(project)
		for i, rev := range list {
			if rev.ID == st.Active[project] && i > 0 {
				target = list[i-1].ID
				refused = checkRoutes(st, project, list[i-1].Routes)
				// The quota may have been lowered since the older
				// revision was created: it holds for rollbacks too.
				if p := st.Projects[project]; p != nil {
					overQuota = checkRevisionQuota(project, p.Quota, list[i-1].Job)
				}
			}
		}
	})
	if target == "" {
		writeErr(w, 409, fmt.Errorf("project %q has no revision before its active one", project))
		return
	}
	if refused != nil {
		writeErr(w, refused.status, fmt.Errorf("roll project %q back to revision %s: %w", project, target, refused))
		return
	}
	if overQuota != nil {
		writeErr(w, 422, fmt.Errorf("roll project %q back to revision %s: %w", project, target, overQuota))
		return
	}
	if err := s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: project, Revision: target, Reason: "rolled back from " + active}); err != nil {
		writeErr(w, 500, err)
		return
	}
	s.obs.activations.WithLabelValues(project, "rollback").Inc()
	writeJSON(w, 200, api.RollbackResponse{Project: project, Revision: target, Deployer: s.cfg.Nomad != nil})
}

// projectStatus is what `butter status` shows of a project.
func (s *Server) projectStatus(name string) (api.ProjectStatus, bool) {
	out := api.ProjectStatus{Project: name, Stale: s.raft.State() != raft.Leader}
	obs := s.observations()
	var ok bool
	s.fsm.Read(func(st *fsm.State) {
		p, found := st.Projects[name]
		if ok = found; !ok {
			return
		}
		out.Quota = apiQuota(p.Quota)
		out.Revisions = len(st.Revisions[name])
		if d := p.Deleting; d != nil {
			out.Deleting = &api.ProjectDeletion{At: d.At, PurgeTopics: d.PurgeTopics, Job: d.Job, Message: d.Message}
		}
		if rev := st.Revisions[name][st.Active[name]]; rev != nil {
			a := apiRevision(rev, false)
			out.Active = &a
			out.Pools = poolStatusesWith(st, rev, obs) // scalestatus.go
		}
		out.Canary = s.apiCanary(name, st.Active[name], st.Canaries[name]) // canary.go
		for id, t := range st.TimerDefs {
			if t.Project == name {
				out.Timers = append(out.Timers, api.TimerStatus{Timer: *apiTimer(t), LastFired: st.Timers[id]})
			}
		}
	})
	sort.Slice(out.Timers, func(i, j int) bool { return out.Timers[i].ID < out.Timers[j].ID })
	return out, ok
}

// observations are the pools' last observations: the autoscaler's on
// the leader that runs it, else Config.Observer's.
func (s *Server) observations() map[string]autoscaler.Observation {
	if a := s.scaler.Load(); a != nil {
		return a.Observations()
	}
	if s.cfg.Observer != nil {
		return s.cfg.Observer.Observations()
	}
	return nil
}

// createKey makes a random API key for a project. Only its SHA-256 hash
// goes into Raft; the key itself is answered once and never stored.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("name")
	var body api.KeyCreateRequest
	if r.ContentLength != 0 {
		// An empty body (as curl -X POST sends) asks for a key of every route.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			s.bodyError(w, r, "key body", err)
			return
		}
		if len(b) > 0 {
			r.Body = io.NopCloser(bytes.NewReader(b))
			if !s.decodeBody(w, r, "key body", &body) {
				return
			}
		}
	}
	var known bool
	s.fsm.Read(func(st *fsm.State) { _, known = st.Projects[project] })
	if !known {
		writeErr(w, 404, fmt.Errorf("no project %q; deploy it first", project))
		return
	}
	if s.isDeleting(w, project) {
		return
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		writeErr(w, 500, err)
		return
	}
	key := "bk_" + hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(key))
	k := fsm.APIKey{Hash: hex.EncodeToString(sum[:]), Project: project, Routes: body.Routes}
	if err := s.Apply(fsm.APIKeyPutType, k); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, api.KeyCreateResponse{Key: key, Hash: k.Hash, Project: project, Routes: k.Routes})
}
