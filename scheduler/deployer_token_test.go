package scheduler_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
)

// TestDeployRefusedToken: when Nomad answers 403 (an unknown token, or a
// policy without read-job), a revision being deployed fails with a
// message that names the cause and $NOMAD_TOKEN, instead of staying
// pending; a healthy revision stays healthy (only logged), and deploys
// work again once Nomad takes the token.
func TestDeployRefusedToken(t *testing.T) {
	e := newDeployEnv(t)
	e.deploy("r1", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r1", fsm.StatusHealthy)

	e.nomad.SetDown(&scheduler.NomadError{StatusCode: 403, Err: errors.New("Unexpected response code: 403 (ACL token not found)")})
	e.settled()
	e.settled()
	if d, _ := e.state("r1"); d.Status != fsm.StatusHealthy {
		t.Errorf("r1 is %s after Nomad refused the token, want still healthy: %+v", d.Status, d)
	}

	e.deploy("r2", nomadfake.Plan{Outcome: nomadfake.Succeed}, false)
	d := e.waitStatus("r2", fsm.StatusFailed)
	for _, want := range []string{"Nomad refused to read job", "ACL token not found", "$NOMAD_TOKEN", "automatic rollback is off"} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("r2's message %q lacks %q", d.Message, want)
		}
	}

	e.nomad.SetDown(nil)
	e.deploy("r3", nomadfake.Plan{Outcome: nomadfake.Succeed}, true)
	e.waitStatus("r3", fsm.StatusHealthy)
}
