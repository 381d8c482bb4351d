package provider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// nomadJobResource is butter_nomad_job: a Nomad job from an HCL2
// jobspec and its variables, registered through Nomad's API. It stands
// in for the Nomad provider's nomad_job (which cannot be installed here)
// for the platform module (terraform/modules/platform): Nomad parses the
// jobspec (POST /v1/jobs/parse), its own plan (POST /v1/job/{id}/plan)
// tells whether the running job differs, and the apply waits for the
// evaluation and, for a service job, its deployment.
type nomadJobResource struct{ nomad *nomadapi.Client }

type nomadJobModel struct {
	ID          types.String `tfsdk:"id"`
	Jobspec     types.String `tfsdk:"jobspec"`
	Variables   types.Map    `tfsdk:"variables"`
	Timeout     types.String `tfsdk:"timeout"`
	Detach      types.Bool   `tfsdk:"detach"`
	Version     types.Int64  `tfsdk:"version"`
	ModifyIndex types.Int64  `tfsdk:"modify_index"`
}

var (
	_ resource.ResourceWithConfigure  = (*nomadJobResource)(nil)
	_ resource.ResourceWithModifyPlan = (*nomadJobResource)(nil)
)

func (r *nomadJobResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_nomad_job"
}

func (r *nomadJobResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A Nomad job registered from an HCL2 jobspec (the platform's jobs in jobs/platform), through the Nomad API the provider's nomad_address names.",
		Attributes: map[string]schema.Attribute{
			"id":      schema.StringAttribute{Computed: true, Description: "The job's ID, from the jobspec."},
			"jobspec": schema.StringAttribute{Required: true, Description: "The job in HCL2, as `nomad job run` takes it (file(...))."},
			"variables": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				Description: "Values of the jobspec's variable blocks, as `nomad job run -var name=value` gives them: numbers, bools, lists and maps in HCL or JSON syntax (jsonencode), anything else a string; Nomad converts them to the declared types."},
			"timeout": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("5m"),
				Description: "How long an apply waits for the job's evaluation and deployment."},
			"detach": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "Register without waiting for the deployment."},
			"version":      schema.Int64Attribute{Computed: true, Description: "The job's version in Nomad."},
			"modify_index": schema.Int64Attribute{Computed: true, Description: "The job's JobModifyIndex in Nomad."},
		},
	}
}

func (r *nomadJobResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	if c := clientsOf(req.ProviderData, &resp.Diagnostics); c != nil {
		r.nomad = c.nomad
	}
}

// parse has Nomad parse m's jobspec with its variables.
func (r *nomadJobResource) parse(ctx context.Context, m *nomadJobModel, diags *diag.Diagnostics) *nomadapi.Job {
	vars := map[string]string{}
	if !m.Variables.IsNull() && !m.Variables.IsUnknown() {
		diags.Append(m.Variables.ElementsAs(ctx, &vars, false)...)
	}
	var lines []string
	for k, v := range vars {
		lines = append(lines, fmt.Sprintf("%s = %s", k, hclValue(v)))
	}
	sort.Strings(lines)
	job, err := r.nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{JobHCL: m.Jobspec.ValueString(), Variables: strings.Join(lines, "\n"), Canonicalize: true})
	if err != nil {
		diags.AddAttributeError(path.Root("jobspec"), "Nomad refused the jobspec", fmt.Sprintf("Nomad at %s could not parse the jobspec with its variables: %v", r.nomad.Address(), err))
		return nil
	}
	if job.ID == nil || *job.ID == "" {
		diags.AddAttributeError(path.Root("jobspec"), "Jobspec without a job", "The jobspec parses to no job ID.")
		return nil
	}
	return job
}

// hclValue writes a -var value into a variables file: a number, a bool,
// a list or a map (in HCL or JSON syntax) as it is, for Nomad to convert
// to the variable's declared type; anything else as a quoted string.
func hclValue(v string) string {
	t := strings.TrimSpace(v)
	if t == "true" || t == "false" || strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
		return t
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return t
	}
	return strconv.Quote(v)
}

// ModifyPlan plans the job's ID, and asks Nomad's own plan whether the
// registered job differs from the jobspec (drift, or a change): if so,
// its version and modify index will change.
func (r *nomadJobResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.nomad == nil {
		return
	}
	var plan nomadJobModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || plan.Jobspec.IsUnknown() || plan.Variables.IsUnknown() {
		return
	}
	job := r.parse(ctx, &plan, &resp.Diagnostics)
	if job == nil {
		return
	}
	plan.ID = types.StringValue(*job.ID)
	if !req.State.Raw.IsNull() {
		var state nomadJobModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		if state.ID.ValueString() != *job.ID {
			resp.RequiresReplace = append(resp.RequiresReplace, path.Root("id"))
		} else {
			pr, _, err := r.nomad.Jobs().Plan(job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
			if err != nil {
				resp.Diagnostics.AddError("Nomad: plan the job", fmt.Sprintf("Nomad at %s: %v", r.nomad.Address(), err))
				return
			}
			if pr.Diff == nil || pr.Diff.Type == "None" {
				plan.Version, plan.ModifyIndex = state.Version, state.ModifyIndex
			} else {
				plan.Version, plan.ModifyIndex = types.Int64Unknown(), types.Int64Unknown()
			}
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *nomadJobResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *nomadJobResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

// save registers the planned job (create and update alike) and records it.
func (r *nomadJobResource) save(ctx context.Context, plan tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics) {
	var m nomadJobModel
	diags.Append(plan.Get(ctx, &m)...)
	if !diags.HasError() && r.register(ctx, &m, diags) {
		diags.Append(state.Set(ctx, &m)...)
	}
}

// register registers m's job and, unless detached, waits for its
// evaluation to place every allocation and for a service job's
// deployment to succeed.
func (r *nomadJobResource) register(ctx context.Context, m *nomadJobModel, diags *diag.Diagnostics) bool {
	if r.nomad == nil {
		notConfigured(diags)
		return false
	}
	timeout, err := parseTimeout(m.Timeout)
	if err != nil {
		diags.AddAttributeError(path.Root("timeout"), "Invalid timeout", err.Error())
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	job := r.parse(ctx, m, diags)
	if job == nil {
		return false
	}
	id := *job.ID
	wo := (&nomadapi.WriteOptions{}).WithContext(ctx)
	reg, _, err := r.nomad.Jobs().Register(job, wo)
	if err != nil {
		diags.AddError(fmt.Sprintf("Nomad: register job %s", id), fmt.Sprintf("Nomad at %s: %v", r.nomad.Address(), err))
		return false
	}
	tflog.Info(ctx, fmt.Sprintf("registered job %s (evaluation %s)", id, reg.EvalID))
	if !m.Detach.ValueBool() {
		if err := r.wait(ctx, id, reg.EvalID); err != nil {
			diags.AddError(fmt.Sprintf("Nomad: job %s did not come up", id), err.Error()+"\n\nThe job stays registered in Nomad: fix the cause and apply again, or destroy it.")
			// The job is registered: keep it in the state so that a
			// destroy removes it.
		}
	}
	info, _, err := r.nomad.Jobs().Info(id, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		diags.AddError(fmt.Sprintf("Nomad: read job %s", id), err.Error())
		return false
	}
	m.ID = types.StringValue(id)
	m.Version, m.ModifyIndex = types.Int64Value(int64(*info.Version)), types.Int64Value(int64(*info.JobModifyIndex))
	return true
}

// wait follows the registration's evaluation until it completes, naming
// any group it could not place, then the job's deployment of its
// current version until it succeeds (service jobs with one).
func (r *nomadJobResource) wait(ctx context.Context, id, evalID string) error {
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	tick := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
			return nil
		}
	}
	for evalID != "" {
		ev, _, err := r.nomad.Evaluations().Info(evalID, q)
		if err != nil {
			return fmt.Errorf("evaluation %s: %w", evalID, err)
		}
		if ev.Status == "complete" || ev.Status == "failed" || ev.Status == "canceled" {
			if len(ev.FailedTGAllocs) > 0 {
				var why []string
				for g, m := range ev.FailedTGAllocs {
					why = append(why, fmt.Sprintf("group %s: %d nodes evaluated, %v filtered by constraint, %v exhausted", g, m.NodesEvaluated, m.ConstraintFiltered, m.DimensionExhausted))
				}
				sort.Strings(why)
				return fmt.Errorf("nomad could not place every allocation: %s", strings.Join(why, "; "))
			}
			if ev.Status != "complete" {
				return fmt.Errorf("evaluation %s %s: %s", evalID, ev.Status, ev.StatusDescription)
			}
			break
		}
		if err := tick(); err != nil {
			return fmt.Errorf("evaluation %s still %s: %w", evalID, ev.Status, err)
		}
	}
	info, _, err := r.nomad.Jobs().Info(id, q)
	if err != nil {
		return err
	}
	if info.Type == nil || *info.Type != "service" {
		return nil
	}
	last := ""
	for {
		d, _, err := r.nomad.Jobs().LatestDeployment(id, q)
		if err != nil {
			return fmt.Errorf("job %s's deployment: %w", id, err)
		}
		if d != nil && d.JobVersion == *info.Version {
			if s := d.Status + ": " + d.StatusDescription; s != last {
				last = s
				tflog.Info(ctx, fmt.Sprintf("job %s deployment %s %s", id, d.ID[:8], s))
			}
			switch d.Status {
			case "successful":
				return nil
			case "failed", "cancelled":
				return fmt.Errorf("deployment %s of job %s %s: %s", d.ID[:8], id, d.Status, d.StatusDescription)
			}
		}
		if err := tick(); err != nil {
			return fmt.Errorf("job %s's deployment not successful (%s): %w", id, orNone(last), err)
		}
	}
}

func (r *nomadJobResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m nomadJobModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || r.nomad == nil {
		return
	}
	info, _, err := r.nomad.Jobs().Info(m.ID.ValueString(), (&nomadapi.QueryOptions{}).WithContext(ctx))
	var ue nomadapi.UnexpectedResponseError
	if errors.As(err, &ue) && ue.StatusCode() == 404 || err == nil && info.Stop != nil && *info.Stop {
		resp.State.RemoveResource(ctx) // purged or stopped outside the state
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Nomad: read job %s", m.ID.ValueString()), fmt.Sprintf("Nomad at %s: %v", r.nomad.Address(), err))
		return
	}
	m.Version, m.ModifyIndex = types.Int64Value(int64(*info.Version)), types.Int64Value(int64(*info.JobModifyIndex))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *nomadJobResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m nomadJobModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.nomad == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	_, _, err := r.nomad.Jobs().Deregister(m.ID.ValueString(), true, (&nomadapi.WriteOptions{}).WithContext(ctx))
	var ue nomadapi.UnexpectedResponseError
	if err != nil && !(errors.As(err, &ue) && ue.StatusCode() == 404) {
		resp.Diagnostics.AddError(fmt.Sprintf("Nomad: stop and purge job %s", m.ID.ValueString()), fmt.Sprintf("Nomad at %s: %v", r.nomad.Address(), err))
	}
}
