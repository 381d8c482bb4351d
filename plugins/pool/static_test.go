package pool_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
)

func TestStaticInstanceID(t *testing.T) {
	for in, want := range map[string]string{
		"butter-mn.default[2]":   "butter-mn.default.2",
		"":                       "",
		"a b/c":                  "a.b.c",
		strings.Repeat("x", 300): strings.Repeat("x", 249),
	} {
		if got := pool.StaticInstanceID(in); got != want {
			t.Errorf("StaticInstanceID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStreamStaticMembership: pools given an instance id (Nomad's
// allocation name) join their stream's group as static members under
// that id; a pool that stops cleanly leaves explicitly, so the other
// takes its partitions at once, not after the session timeout (a
// minute here, longer than the deadline), which franz-go's Close alone
// would leave a static member to.
func TestStreamStaticMembership(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.in", Partitions: 4})
	const group = "butter.test.static.st.in"
	f := streamFn("static", "first", "st.in", "st.out", "cat")
	var pools []*pool.Pool
	for _, name := range []string{"butter-t.p[0]", "butter-t.p[1]"} {
		p, _ := start(t, []pool.FunctionConfig{f}, pool.WithInstanceID(name), pool.WithSessionTimeout(time.Minute))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := p.StartStreams(ctx, dev.Config()); err != nil {
			t.Fatal(err)
		}
		cancel()
		pools = append(pools, p)
	}
	adm := kadm.NewClient(cl)
	members := func() (ids []string, partitions int) {
		ds, err := adm.DescribeGroups(context.Background(), group)
		if err != nil || ds[group].State != "Stable" {
			return nil, 0
		}
		for _, m := range ds[group].Members {
			if m.InstanceID != nil {
				ids = append(ids, *m.InstanceID)
			}
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range c.Topics {
					partitions += len(tp.Partitions)
				}
			}
		}
		sort.Strings(ids)
		return ids, partitions
	}
	eventually(t, time.Minute, "two static members named after the allocations", func() bool {
		ids, n := members()
		return strings.Join(ids, ",") == "butter-t.p.0,butter-t.p.1" && n == 4
	})
	pools[0].Close()
	eventually(t, 30*time.Second, "the other pool holding every partition after a clean stop", func() bool {
		ids, n := members()
		return strings.Join(ids, ",") == "butter-t.p.1" && n == 4
	})
	produce(t, cl, "st.in", events("ev", 0, 40)...)
	got := values(readAll(t, dev.Addr, "st.out", 40))
	for _, e := range events("ev", 0, 40) {
		if got[e] != 1 {
			t.Errorf("%s handled %d times", e, got[e])
		}
	}

	// A replacement under the same name joins while the old pool still
	// runs (Nomad starts a new allocation while the old one drains): it
	// takes the id over, and the old pool's leave on stop does not remove
	// it (the leave names the old member).
	memberOf := func() string {
		ds, err := adm.DescribeGroups(context.Background(), group)
		if err != nil || ds[group].State != "Stable" || len(ds[group].Members) != 1 {
			return ""
		}
		return ds[group].Members[0].MemberID
	}
	old := memberOf()
	repl, _ := start(t, []pool.FunctionConfig{f}, pool.WithInstanceID("butter-t.p[1]"), pool.WithSessionTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := repl.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	var newMember string
	eventually(t, 30*time.Second, "the replacement holding the instance id", func() bool {
		newMember = memberOf()
		return newMember != "" && newMember != old
	})
	pools[1].Close()
	if m := memberOf(); m != newMember {
		t.Fatalf("after the old pool stopped, the group's member is %q, want the replacement %q still", m, newMember)
	}
	produce(t, cl, "st.in", events("ev", 40, 80)...)
	got = values(readAll(t, dev.Addr, "st.out", 80))
	for _, e := range events("ev", 40, 80) {
		if got[e] < 1 {
			t.Errorf("%s not handled after the replacement", e)
		}
	}
	if m := memberOf(); m != newMember {
		t.Errorf("the replacement's member id changed from %q to %q: it was removed and rejoined", newMember, m)
	}
}

// TestStreamStaticRestart: a static member that dies (it does not leave:
// a crash, a lost node) is replaced by a pool under the same instance id,
// which takes its partitions back at once: every event, on every
// partition, is handled well within the session timeout (a minute). A
// new dynamic member in its place would wait for the dead one, which
// still holds its partitions in the group, until the session expired.
func TestStreamStaticRestart(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "sr.in", Partitions: 4})
	const group = "butter.test.restart.sr.in"
	f := streamFn("restart", "first", "sr.in", "sr.out", "cat")
	other, _ := start(t, []pool.FunctionConfig{f}, pool.WithInstanceID("butter-t.p[1]"), pool.WithSessionTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := other.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	// The member that dies: a consumer of the group under the id
	// butter-t.p.0 that closes without leaving, as a static member does.
	dead, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics("sr.in"),
		kgo.InstanceID(pool.StaticInstanceID("butter-t.p[0]")), kgo.SessionTimeout(time.Minute), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if fs := dead.PollFetches(context.Background()); fs.IsClientClosed() {
				return
			}
		}
	}()
	waitSettled(t, cl, group, 2)
	dead.Close()

	restarted, _ := start(t, []pool.FunctionConfig{f}, pool.WithInstanceID("butter-t.p[0]"), pool.WithSessionTimeout(time.Minute))
	if err := restarted.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	produce(t, cl, "sr.in", events("ev", 0, 40)...)
	out, ok := readTopic(t, dev.Addr, "sr.out", 30*time.Second, func(r []*kgo.Record) bool { return len(values(r)) >= 40 })
	if !ok {
		t.Fatalf("%d of 40 events handled 30s after the restart: the dead member's partitions were not taken back", len(values(out)))
	}
	t.Logf("every event handled %v after the restart", time.Since(begin).Round(time.Millisecond))
}
