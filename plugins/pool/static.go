package pool

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// WithInstanceID makes the stream consumers static members of their
// consumer groups (Kafka's group.instance.id, KIP-345): each joins with
// the instance id derived from id (see StaticInstanceID), which must be
// stable across restarts of the same pool and unique among the pools of
// a function. `butter pool` passes Nomad's $NOMAD_ALLOC_NAME
// ("<job>.<group>[<index>]"), which a replacement allocation keeps.
//
// A static member that dies does not leave: its partitions wait for it.
// A replacement that joins with the same id within the session timeout
// (WithSessionTimeout) takes the same partitions back at once, without a
// rebalance of the other pools; one that does not come back in time
// loses them to the others when the session expires, as a dynamic member
// would. A pool that stops cleanly (a drain, a deploy, a scale-in) leaves
// its groups explicitly, so its partitions move at once.
//
// Exactly-once triggers derive their transactional IDs from it too
// (transact.go), and are not static members: a replacement fences the
// transactions its predecessor left open.
func WithInstanceID(id string) Option {
	return func(o *options) { o.instanceID = StaticInstanceID(id) }
}

// StaticInstanceID turns a name into a valid group instance id: Kafka
// accepts the characters of topic names (letters, digits, '.', '_', '-')
// and at most 249 of them. Others become '.', so Nomad's "job.group[2]"
// gives "job.group.2".
func StaticInstanceID(name string) string {
	name = strings.TrimSuffix(name, "]")
	id := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '.'
	}, name)
	if len(id) > 249 {
		id = id[:249]
	}
	return id
}

// staticOpts returns the consumer client's static membership option, if
// the pool has an instance id.
func (p *Pool) staticOpts() []kgo.Opt {
	if p.opts.instanceID == "" {
		return nil
	}
	return []kgo.Opt{kgo.InstanceID(p.opts.instanceID)}
}

// closeClient closes the consumer's client; a static member then leaves
// its group explicitly (franz-go does not, for static members), through
// a short-lived client of its own: leaving from the consumer's client
// before closing it could let its group loop rejoin in between.
//
// A replacement allocation (same name, same instance id) may already
// have joined, fencing this consumer: it must stay in the group. The
// leave names this consumer's member id, which Kafka checks against the
// id's current member; the embedded broker (kfake) does not, so the
// group is described first and the leave skipped when the instance id
// belongs to another member now.
func (c *consumer) closeClient() {
	member, _ := c.cl.GroupMetadata()
	c.cl.Close()
	id := c.p.opts.instanceID
	if id == "" || member == "" {
		return
	}
	log := c.f.log.With("stream", c.tr.Stream, "group", c.tr.Group, "instance_id", id)
	cl, err := kgo.NewClient(c.leaveOpts...)
	if err != nil {
		log.Warn("cannot leave the consumer group: its partitions move once the session times out", "error", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if gs, err := kadm.NewClient(cl).DescribeGroups(ctx, c.tr.Group); err == nil {
		for _, m := range gs[c.tr.Group].Members {
			if m.InstanceID != nil && *m.InstanceID == id && m.MemberID != member {
				log.Debug("not leaving the consumer group: a replacement holds the instance id", "member", m.MemberID)
				return
			}
		}
	}
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = c.tr.Group
	m := kmsg.NewLeaveGroupRequestMember()
	m.InstanceID = &id
	m.MemberID = member
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, m := range resp.Members {
			// Already gone, or replaced by a newer member under the id.
			if e := kerr.ErrorForCode(m.ErrorCode); e != nil && err == nil && !errors.Is(e, kerr.UnknownMemberID) && !errors.Is(e, kerr.FencedInstanceID) {
				err = e
			}
		}
	}
	if err != nil {
		log.Warn("cannot leave the consumer group: its partitions move once the session times out", "error", err)
		return
	}
	log.Debug("left the consumer group")
}
