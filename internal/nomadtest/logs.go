package nomadtest

import (
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// LogTasks logs, for a failing test, the last tail bytes of each kind
// ("stderr", "stdout") of every task of job's allocations, stopped ones
// included, through Nomad's API.
func LogTasks(t testing.TB, c *api.Client, job string, tail int64, kinds ...string) {
	t.Helper()
	allocs, _, err := c.Jobs().Allocations(job, true, nil)
	if err != nil {
		return
	}
	for _, a := range allocs {
		alloc, _, err := c.Allocations().Info(a.ID, nil)
		if err != nil {
			continue
		}
		for task := range a.TaskStates {
			for _, kind := range kinds {
				frames, errs := c.AllocFS().Logs(alloc, false, task, kind, "end", tail, nil, nil)
				var data []byte
			read:
				for {
					select {
					case f, ok := <-frames:
						if !ok || f == nil {
							break read
						}
						data = append(data, f.Data...)
					case <-errs:
						break read
					case <-time.After(2 * time.Second):
						break read
					}
				}
				t.Logf("job %s allocation %s (%s, %s) task %s %s:\n%s", job, a.ID[:8], a.Name, a.NodeName, task, kind, data)
			}
		}
	}
}
