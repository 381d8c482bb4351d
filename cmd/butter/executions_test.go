package main

import (
	"encoding/json"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKeptBy: the tiers' rules read from each record's headers, counted
// from now, whatever the broker has cleaned yet: every execution of the
// last hour; of the last day, the last of each minute; older ones, the
// last of each hour up to 30 days; none older.
func TestKeptBy(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tiers := []struct {
		age, onePer time.Duration
	}{{time.Hour, 0}, {24 * time.Hour, time.Minute}, {30 * 24 * time.Hour, time.Hour}}
	var recs []*kgo.Record
	add := func(id string, at time.Time) {
		v, _ := json.Marshal(pool.Execution{Time: at, Function: "f", Invocation: id})
		for k, tr := range tiers {
			key := "f/" + id
			hs := []kgo.RecordHeader{{Key: pool.HeaderExecAge, Value: []byte(tr.age.String())}}
			if tr.onePer > 0 {
				key = "f/" + strconv.FormatInt(at.UnixNano()/int64(tr.onePer), 10)
				hs = append(hs, kgo.RecordHeader{Key: pool.HeaderExecOnePer, Value: []byte(tr.onePer.String())})
			}
			recs = append(recs, &kgo.Record{Topic: "t" + strconv.Itoa(k), Key: []byte(key), Value: v, Headers: hs})
		}
	}
	minute := now.Truncate(time.Minute)
	add("recent-1", now.Add(-10*time.Minute))
	add("recent-2", now.Add(-10*time.Minute+time.Second)) // same minute: both, under an hour
	add("day-1", minute.Add(-3*time.Hour))                // same minute as day-2
	add("day-2", minute.Add(-3*time.Hour+30*time.Second)) // its minute's last
	add("day-3", minute.Add(-5*time.Hour))
	hour := now.Truncate(time.Hour)
	add("month-1", hour.Add(-72*time.Hour))
	add("month-2", hour.Add(-72*time.Hour+10*time.Minute)) // its hour's last
	add("ancient", now.Add(-40*24*time.Hour))

	seen := map[string]bool{}
	for _, e := range keptBy(recs, now) {
		seen[e.Invocation] = true
	}
	var got []string
	for id := range seen {
		got = append(got, id)
	}
	sort.Strings(got)
	want := []string{"day-2", "day-3", "month-2", "recent-1", "recent-2"}
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kept %v, want %v", got, want)
		}
	}
}
