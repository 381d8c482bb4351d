package autoscaler

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/names"
	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kadm"
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

	mu    sync.Mutex
	pools map[string]map[string]poolReading // by Target.Key, then allocation ID
	lags  map[string]lagReading             // by Target.Key
}

type poolReading struct {
	at  time.Time
	fns map[string]FunctionLoad
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
		s.pools, s.lags = map[string]map[string]poolReading{}, map[string]lagReading{}
	}
	if s.pools[g.Key()] == nil {
		s.pools[g.Key()] = map[string]poolReading{}
	}
	cache := s.pools[g.Key()]
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
	for _, r := range regs {
		if r.JobID != g.Job || seen[r.AllocID] {
			continue
		}
		seen[r.AllocID] = true
		url := "http://" + net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) + "/metrics"
		fns, err := s.readMetrics(ctx, url)
		s.mu.Lock()
		if err == nil {
			cache[r.AllocID] = poolReading{at: now, fns: fns}
		}
		last, ok := cache[r.AllocID]
		s.mu.Unlock()
		if err != nil {
			l.Problems = append(l.Problems, fmt.Sprintf("allocation %s: %v", short(r.AllocID), err))
		}
		if !ok {
			continue // never answered: left out
		}
		oldest(last.at)
		l.Allocations++
		for f, fl := range last.fns {
			sum := l.Functions[f]
			sum.InFlight += fl.InFlight
			sum.Queued += fl.Queued
			sum.Instances += fl.Instances
			l.Functions[f] = sum
		}
	}
	s.mu.Lock()
	for id := range cache {
		if !seen[id] {
			delete(cache, id) // the allocation is gone
		}
	}
	s.mu.Unlock()

	if groups := g.Policy.ConsumerGroups; len(groups) > 0 && g.Policy.TargetLag > 0 {
		if s.Kafka == nil {
			l.Problems = append(l.Problems, "no Kafka client: the lag signal is off")
		} else {
			lag, err := s.readLag(ctx, groups)
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

// metricLine matches a sample of one of the two gauges the loop reads.
var metricLine = regexp.MustCompile(`^(butter_inflight_calls|butter_queued_calls|butter_instances)\{(.*)\} (\S+)`)
var functionLabel = regexp.MustCompile(`(?:^|,)function="((?:[^"\\]|\\.)*)"`)

// readMetrics reads a pool's Prometheus text: butter_inflight_calls and
// butter_instances by function.
func (s *PoolSignals) readMetrics(ctx context.Context, url string) (map[string]FunctionLoad, error) {
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the pool's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the pool's metrics: %s answered %s", url, resp.Status)
	}
	return ParseMetrics(io.LimitReader(resp.Body, 8<<20))
}

// ParseMetrics reads butter_inflight_calls, butter_queued_calls and
// butter_instances by function from a pool's /metrics answer (Prometheus
// text format).
func ParseMetrics(r io.Reader) (map[string]FunctionLoad, error) {
	out := map[string]FunctionLoad{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
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
			return nil, fmt.Errorf("metric %s of function %s: value %q: %w", m[1], fm[1], m[3], err)
		}
		fl := out[fm[1]]
		switch m[1] {
		case "butter_inflight_calls":
			fl.InFlight = int(v)
		case "butter_queued_calls":
			fl.Queued = int(v)
		default:
			fl.Instances = int(v)
		}
		out[fm[1]] = fl
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

// readLag sums the lag of the consumer groups. A group that does not
// exist yet (its pool never consumed) has none.
func (s *PoolSignals) readLag(ctx context.Context, groups []string) (int64, error) {
	lags, err := s.Kafka.Lag(ctx, groups...)
	if err != nil {
		return 0, err
	}
	var total int64
	var problems []string
	for _, g := range groups {
		dl, ok := lags[g]
		if !ok {
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
	if len(problems) > 0 {
		sort.Strings(problems)
		return 0, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return total, nil
}
