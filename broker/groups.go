package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// SessionLimits are the consumer group session timeouts a group
// coordinator accepts (its group.min.session.timeout.ms and
// group.max.session.timeout.ms): a member whose timeout is outside them is
// refused at every join with INVALID_SESSION_TIMEOUT, and never consumes.
type SessionLimits struct {
	Min, Max time.Duration
}

// Allows reports whether a member with session timeout d may join.
func (l SessionLimits) Allows(d time.Duration) bool { return d >= l.Min && d <= l.Max }

func (l SessionLimits) String() string {
	return fmt.Sprintf("between %s (group.min.session.timeout.ms) and %s (group.max.session.timeout.ms)", l.Min, l.Max)
}

// GroupSessionLimits reads the session limits of each group's coordinator.
// It needs DescribeConfigs on the cluster, which an ACL may refuse: it then
// fails, and the limits can only be found out at join. A group missing
// from the answer has a coordinator that does not state both limits.
func GroupSessionLimits(ctx context.Context, adm *kadm.Client, groups ...string) (map[string]SessionLimits, error) {
	coords := adm.FindGroupCoordinators(ctx, groups...)
	var ids []int32
	seen := map[int32]bool{}
	for _, g := range groups {
		c, ok := coords[g]
		if !ok {
			return nil, fmt.Errorf("find the coordinator of group %s: no answer", g)
		}
		if c.Err != nil {
			return nil, fmt.Errorf("find the coordinator of group %s: %w", g, c.Err)
		}
		if !seen[c.NodeID] {
			seen[c.NodeID] = true
			ids = append(ids, c.NodeID)
		}
	}
	rcs, err := adm.DescribeBrokerConfigs(ctx, ids...)
	if err != nil {
		return nil, fmt.Errorf("describe the group coordinators' configs: %w", err)
	}
	byBroker := map[string]SessionLimits{}
	var errs []error
	for _, rc := range rcs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("describe broker %s's configs: %w", rc.Name, rc.Err))
			continue
		}
		var l SessionLimits
		for _, c := range rc.Configs {
			ms, err := strconv.ParseInt(c.MaybeValue(), 10, 64)
			if err != nil {
				continue
			}
			switch c.Key {
			case "group.min.session.timeout.ms":
				l.Min = time.Duration(ms) * time.Millisecond
			case "group.max.session.timeout.ms":
				l.Max = time.Duration(ms) * time.Millisecond
			}
		}
		if l.Min > 0 && l.Max > 0 {
			byBroker[rc.Name] = l
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := map[string]SessionLimits{}
	for _, g := range groups {
		if l, ok := byBroker[strconv.Itoa(int(coords[g].NodeID))]; ok {
			out[g] = l
		}
	}
	return out, nil
}
