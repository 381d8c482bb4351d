package autoscaler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/names"
	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// PoolSignals reads a group's load where it already is, with no traffic
// per call: each allocation's pool, found through the group's Nomad
// service, answers GET /metrics (butter_inflight_calls and
// butter_instances per function); the pool's consumer groups' lag comes
// from Kafka through kadm. One read per allocation and one lag request
// per group each pass. Calls queued in a pool (butter_queued_calls)
// count with those in flight.
//
// A part that cannot be read keeps its last reading, with its age: the
// loop does not act on a load older than its StaleAfter. An allocation
// that has never answered (its pool still starting) is left out of the
// load, so the loop does not scale in on it (Load.Allocations is short of
// the count).
type PoolSignals struct {
	Nomad *api.Client
	// Kafka reads consumer lag; nil leaves the lag signal out (a
	// problem the decision names).
	Kafka *kadm.Client
	// HTTP reads the pools' metrics; a client with a 2s timeout when nil.
	HTTP  *http.Client
	Clock Clock

	mu      sync.Mutex
	pools   map[string]map[string]poolReading // by Target.Key, then allocation ID
	lags    map[string]lagReading             // by Target.Key
	traffic map[string]*TrafficWindow         // by Target.Key, of its allocations
}

type poolReading struct {
	at  time.Time
	fns map[string]FunctionLoad
	// stats is the allocation's last CPU and memory reading from Nomad;
	// its at is zero when none was ever read.
	stats statsReading
}

type statsReading struct {
	at  time.Time
	cpu float64 // MHz
	mem uint64  // bytes (RSS)
}

type lagReading struct {
	at  time.Time
	lag int64
}

var _ Signals = (*PoolSignals)(nil)

func (s *PoolSignals) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

// Load reads the group's load.
func (s *PoolSignals) Load(ctx context.Context, g Group) (Load, error) {
	s.mu.Lock()
	if s.pools == nil {
		s.pools, s.lags, s.traffic = map[string]map[string]poolReading{}, map[string]lagReading{}, map[string]*TrafficWindow{}
	}
	if s.pools[g.Key()] == nil {
		s.pools[g.Key()] = map[string]poolReading{}
		s.traffic[g.Key()] = &TrafficWindow{}
	}
	cache, traffic := s.pools[g.Key()], s.traffic[g.Key()]
	s.mu.Unlock()
	now := s.now()
	l := Load{At: now, Functions: map[string]FunctionLoad{}}
	oldest := func(t time.Time) {
		if t.Before(l.At) {
			l.At = t
		}
	}

	svc := names.ServiceName(g.Project, g.Group)
	regs, _, err := s.Nomad.Services().Get(svc, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Load{}, fmt.Errorf("list the allocations of service %s in Nomad: %w", svc, err)
	}
	seen := map[string]bool{}
	wantStats := g.Policy.TargetCPU > 0 || g.Policy.TargetMemory > 0
	noStats := 0 // allocations that report calls but never had stats read
	for _, r := range regs {
		if r.JobID != g.Job || seen[r.AllocID] {
			continue
		}
		seen[r.AllocID] = true
		url := "http://" + net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) + "/metrics"
		fns, started, err := s.readMetrics(ctx, url)
		var st statsReading
		var stErr error
		if wantStats {
			st, stErr = s.readStats(ctx, r.AllocID, now)
		}
		if err == nil {
			if !started.IsZero() {
				traffic.Started(r.AllocID, started)
			}
			traffic.Add(r.AllocID, now, fns)
		}
		s.mu.Lock()
		last, ok := cache[r.AllocID]
		if err == nil {
			last.at, last.fns, ok = now, fns, true
		}
		if ok && stErr == nil && !st.at.IsZero() {
			last.stats = st
		}
		if ok {
			cache[r.AllocID] = last
		}
		s.mu.Unlock()
		if err != nil {
			l.Problems = append(l.Problems, fmt.Sprintf("allocation %s: %v", short(r.AllocID), err))
		}
		if stErr != nil {
			l.Problems = append(l.Problems, fmt.Sprintf("allocation %s: %v", short(r.AllocID), stErr))
		}
		if !ok {
			continue // never answered: left out
		}
		oldest(last.at)
		l.Allocations++
		if wantStats {
			if last.stats.at.IsZero() {
				noStats++
			} else {
				oldest(last.stats.at)
				if l.Resources == nil {
					l.Resources = &Resources{CPUReservedMHz: g.CPUMHz, MemoryReservedMB: g.MemoryMB}
				}
				l.Resources.Allocations++
				l.Resources.CPUMHz += last.stats.cpu
				l.Resources.MemoryBytes += last.stats.mem
			}
		}
		for f, fl := range last.fns {
			l.Functions[f] = addLoad(l.Functions[f], fl)
		}
	}
	s.mu.Lock()
	for id := range cache {
		if !seen[id] {
			delete(cache, id) // the allocation is gone
		}
	}
	s.mu.Unlock()
	traffic.Keep(func(id string) bool { return seen[id] })
	for f, t := range traffic.Traffic() {
		if fl, ok := l.Functions[f]; ok {
			fl.Traffic = &t
			l.Functions[f] = fl
		}
	}
	if noStats > 0 {
		// The cpu or memory target has no reading for some allocation
		// that runs: the load is not known, and nothing acts on it.
		l.Problems = append(l.Problems, fmt.Sprintf("no CPU and memory stats ever read from Nomad for %d of %d allocations: the cpu and memory targets cannot be judged", noStats, l.Allocations))
		l.At = time.Time{}
	}

	if groups := g.Policy.ConsumerGroups; len(groups) > 0 && g.Policy.TargetLag > 0 {
		if s.Kafka == nil {
			l.Problems = append(l.Problems, "no Kafka client: the lag signal is off")
		} else {
			lag, err := s.readLag(ctx, groups, g.Policy.Streams)
			s.mu.Lock()
			if err == nil {
				s.lags[g.Key()] = lagReading{at: now, lag: lag}
			}
			last, ok := s.lags[g.Key()]
			s.mu.Unlock()
			if err != nil {
				l.Problems = append(l.Problems, "consumer lag: "+err.Error())
			}
			if ok {
				oldest(last.at)
				l.Lag = last.lag
			} else {
				l.At = time.Time{} // no lag ever read: nothing to act on
			}
		}
	}
	return l, nil
}

// addLoad adds one allocation's reading of a function to the sum of the
// others.
func addLoad(sum, fl FunctionLoad) FunctionLoad {
	sum.InFlight += fl.InFlight
	sum.Queued += fl.Queued
	sum.Instances += fl.Instances
	sum.Calls += fl.Calls
	sum.Errors += fl.Errors
	sum.Lag += fl.Lag
	return sum
}

// readStats reads an allocation's CPU and memory use from Nomad
// (`nomad alloc status -stats`): the client that runs it answers, through
// the server.
func (s *PoolSignals) readStats(ctx context.Context, allocID string, now time.Time) (statsReading, error) {
	u, err := s.Nomad.Allocations().Stats(&api.Allocation{ID: allocID}, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return statsReading{}, fmt.Errorf("read Nomad's allocation stats: %w", err)
	}
	if u == nil || u.ResourceUsage == nil || u.ResourceUsage.CpuStats == nil || u.ResourceUsage.MemoryStats == nil {
		return statsReading{}, errors.New("read Nomad's allocation stats: the answer has no CPU or memory usage")
	}
	ms := u.ResourceUsage.MemoryStats
	mem := ms.RSS
	if mem == 0 {
		// A task in a cgroup v2 reports the cgroup's usage, not RSS.
		mem = ms.Usage
	}
	return statsReading{at: now, cpu: u.ResourceUsage.CpuStats.TotalTicks, mem: mem}, nil
}

// metricLine matches a sample of one of the series the loop and the
// traffic read.
var metricLine = regexp.MustCompile(`^(butter_inflight_calls|butter_queued_calls|butter_instances|butter_invocations_total|butter_invocation_errors_total|butter_invocation_duration_seconds_bucket|butter_consumer_lag)\{(.*)\} (\S+)`)
var functionLabel = regexp.MustCompile(`(?:^|,)function="((?:[^"\\]|\\.)*)"`)
var outcomeLabel = regexp.MustCompile(`(?:^|,)outcome="([^"]*)"`)
var leLabel = regexp.MustCompile(`(?:^|,)le="([^"]*)"`)

// readMetrics reads a pool's Prometheus text (ParsePoolMetrics).
func (s *PoolSignals) readMetrics(ctx context.Context, url string) (map[string]FunctionLoad, time.Time, error) {
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read the pool's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, time.Time{}, fmt.Errorf("read the pool's metrics: %s answered %s", url, resp.Status)
	}
	return ParsePoolMetrics(io.LimitReader(resp.Body, 8<<20))
}

// ParseMetrics reads, by function, from a pool's /metrics answer
// (Prometheus text format): butter_inflight_calls, butter_queued_calls
// and butter_instances; the cumulative butter_invocations_total and
// butter_invocation_errors_total (Calls, Errors: the calls that ran and
// failed, and those refused before running, an input that fails its
// schema, which only the second counts) and
// butter_invocation_duration_seconds buckets (Latency);
// butter_consumer_lag summed over partitions (Lag).
func ParseMetrics(r io.Reader) (map[string]FunctionLoad, error) {
	fns, _, err := ParsePoolMetrics(r)
	return fns, err
}

// startLine is the process collector's start time, in Unix seconds.
var startLine = regexp.MustCompile(`^process_start_time_seconds (\S+)`)

// ParsePoolMetrics is ParseMetrics, and when the pool's process started
// (process_start_time_seconds; zero when absent): its counters were zero
// then (TrafficWindow.Started).
func ParsePoolMetrics(r io.Reader) (map[string]FunctionLoad, time.Time, error) {
	out := map[string]FunctionLoad{}
	failed := map[string]float64{} // butter_invocations_total{outcome="error"}
	typed := map[string]float64{}  // butter_invocation_errors_total, every type
	var started time.Time
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if sm := startLine.FindStringSubmatch(sc.Text()); sm != nil {
			if v, err := strconv.ParseFloat(sm[1], 64); err == nil && v > 0 {
				started = time.Unix(0, int64(v*float64(time.Second)))
			}
			continue
		}
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fm := functionLabel.FindStringSubmatch(m[2])
		if fm == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, started, fmt.Errorf("metric %s of function %s: value %q: %w", m[1], fm[1], m[3], err)
		}
		fl := out[fm[1]]
		switch m[1] {
		case "butter_inflight_calls":
			fl.InFlight = int(v)
		case "butter_queued_calls":
			fl.Queued = int(v)
		case "butter_instances":
			fl.Instances = int(v)
		case "butter_invocations_total":
			fl.Calls += v
			if om := outcomeLabel.FindStringSubmatch(m[2]); om != nil && om[1] == "error" {
				failed[fm[1]] += v
			}
		case "butter_invocation_errors_total":
			typed[fm[1]] += v
		case "butter_invocation_duration_seconds_bucket":
			lm := leLabel.FindStringSubmatch(m[2])
			if lm == nil {
				continue
			}
			le, err := strconv.ParseFloat(lm[1], 64)
			if err != nil {
				return nil, started, fmt.Errorf("metric %s of function %s: le %q: %w", m[1], fm[1], lm[1], err)
			}
			fl.Latency = append(fl.Latency, Bucket{Le: le, Count: v})
		case "butter_consumer_lag":
			fl.Lag += int64(v)
		}
		out[fm[1]] = fl
	}
	if err := sc.Err(); err != nil {
		return nil, started, fmt.Errorf("read metrics: %w", err)
	}
	for f, fl := range out {
		if len(fl.Latency) > 1 {
			sort.Slice(fl.Latency, func(i, j int) bool { return fl.Latency[i].Le < fl.Latency[j].Le })
		}
		// The refused calls are errors of a type with no invocation.
		refused := max(typed[f]-failed[f], 0)
		fl.Calls += refused
		fl.Errors = failed[f] + refused
		out[f] = fl
	}
	return out, started, nil
}

// readLag sums the lag of the consumer groups. A group that never
// committed on a topic it consumes (its pool never ran, or ran without
// consuming) has as lag the records from where it will start: the
// trigger's offset (uncommittedLag).
func (s *PoolSignals) readLag(ctx context.Context, groups []string, streams []jobs.ConsumedStream) (int64, error) {
	lags, err := s.Kafka.Lag(ctx, groups...)
	if err != nil {
		return 0, err
	}
	var total int64
	var problems []string
	for _, g := range groups {
		dl, ok := lags[g]
		if !ok || neverCommitted(dl) {
			continue
		}
		if dl.FetchErr != nil || dl.DescribeErr != nil {
			e := dl.FetchErr
			if e == nil {
				e = dl.DescribeErr
			}
			problems = append(problems, fmt.Sprintf("group %s: %v", g, e))
			continue
		}
		total += dl.Lag.Total()
	}
	var uncommitted []jobs.ConsumedStream
	for _, st := range streams {
		dl, ok := lags[st.Group]
		if ok && !neverCommitted(dl) && (dl.FetchErr != nil || dl.DescribeErr != nil) {
			continue // named above
		}
		if _, consumed := dl.Lag[st.Topic]; !consumed {
			uncommitted = append(uncommitted, st)
		}
	}
	if len(uncommitted) > 0 {
		n, err := s.uncommittedLag(ctx, uncommitted)
		if err != nil {
			problems = append(problems, err.Error())
		}
		total += n
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return 0, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return total, nil
}

// neverCommitted says that a group does not exist: some brokers answer
// GROUP_ID_NOT_FOUND for it where Kafka describes a dead group.
func neverCommitted(dl kadm.DescribedGroupLag) bool {
	return errors.Is(dl.DescribeErr, kerr.GroupIDNotFound) || errors.Is(dl.FetchErr, kerr.GroupIDNotFound)
}

// uncommittedLag is the lag of groups with no committed offset on their
// topics: per partition, the records from where the group will start to
// the end. "first" starts at the log's start, an offset at that offset,
// an RFC 3339 time at the first record at or after it; "latest" starts
// at the end, so it has none (records written while the pool has no
// allocation and the group never committed are not its to read).
func (s *PoolSignals) uncommittedLag(ctx context.Context, streams []jobs.ConsumedStream) (int64, error) {
	var topics []string
	for _, st := range streams {
		if st.Offset != "latest" && !slices.Contains(topics, st.Topic) {
			topics = append(topics, st.Topic)
		}
	}
	if len(topics) == 0 {
		return 0, nil
	}
	ends, err := s.Kafka.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s, for the lag of groups that never committed: %w", strings.Join(topics, ", "), err)
	}
	starts, err := s.Kafka.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("start offsets of %s, for the lag of groups that never committed: %w", strings.Join(topics, ", "), err)
	}
	var total int64
	for _, st := range streams {
		var from func(p int32) int64
		switch {
		case st.Offset == "latest":
			continue
		case st.Offset == "first":
			from = func(p int32) int64 { o, _ := starts.Lookup(st.Topic, p); return o.Offset }
		default:
			if n, err := strconv.ParseInt(st.Offset, 10, 64); err == nil {
				from = func(p int32) int64 { o, _ := starts.Lookup(st.Topic, p); return max(n, o.Offset) }
			} else if at, err := time.Parse(time.RFC3339, st.Offset); err == nil {
				after, err := s.Kafka.ListOffsetsAfterMilli(ctx, at.UnixMilli(), st.Topic)
				if err == nil {
					err = after.Error()
				}
				if err != nil {
					return total, fmt.Errorf("offsets of %s after %s, for group %s that never committed: %w", st.Topic, st.Offset, st.Group, err)
				}
				from = func(p int32) int64 { o, _ := after.Lookup(st.Topic, p); return o.Offset }
			} else {
				return total, fmt.Errorf("group %s on %s: offset %q is not first, latest, a number or an RFC 3339 time", st.Group, st.Topic, st.Offset)
			}
		}
		for p, end := range ends[st.Topic] {
			if f := from(p); f >= 0 && end.Offset > f {
				total += end.Offset - f
			}
		}
	}
	return total, nil
}
