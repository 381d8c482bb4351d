package vaultsetup

import (
	"strings"
	"testing"

	"github.com/butterfn/butter/names"
)

// TestPolicyCoversWhatIsUsed checks the policy against the names the other
// parts use: `butter secrets put` writes under KVMount/data/names.KVPath,
// the pool decrypts with names.TransitKey. The end-to-end check against a
// real Vault is TestSetupVault.
func TestPolicyCoversWhatIsUsed(t *testing.T) {
	p := policyText("iot")
	for _, want := range []string{
		`path "` + KVMount + `/data/` + names.KVPath("iot", "*") + `"`,
		`path "` + KVMount + `/metadata/` + names.KVPath("iot", "*") + `"`,
		`path "` + TransitMount + `/decrypt/` + names.TransitKey("iot") + `"`,
		`path "` + TransitMount + `/encrypt/` + names.TransitKey("iot") + `"`,
	} {
		if !strings.Contains(p, want) {
			t.Errorf("policy lacks %s:\n%s", want, p)
		}
	}
	if strings.Contains(p, "other") {
		t.Errorf("policy names another project:\n%s", p)
	}
}

func TestRoleBindsTheProjectsJob(t *testing.T) {
	r := roleFields("iot")
	if got := r["bound_claims"].(map[string]any)["nomad_job_id"]; got != names.JobID("iot") {
		t.Errorf("bound nomad_job_id = %v, want %s", got, names.JobID("iot"))
	}
	if got := r["token_policies"].([]string); len(got) != 1 || got[0] != names.VaultPolicy("iot") {
		t.Errorf("token_policies = %v, want [%s]", got, names.VaultPolicy("iot"))
	}
}
