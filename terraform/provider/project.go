package provider

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
)

// projectResource is butter_project: a directory of spec files and
// sources, deployed as a revision. The plan compiles the directory as
// `butter deploy` would and shows the revision (a content hash), a
// fingerprint per function and the routes, so that an edit shows exactly
// the functions it changes; apply pushes the revision and follows its
// deployment until healthy; destroy deletes the project.
type projectResource struct{ client *api.Client }

type projectModel struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Directory   types.String `tfsdk:"directory"`
	Variables   types.Map    `tfsdk:"variables"`
	Timeout     types.String `tfsdk:"timeout"`
	PurgeTopics types.Bool   `tfsdk:"purge_topics"`
	Revision    types.String `tfsdk:"revision"`
	Functions   types.Map    `tfsdk:"functions"`
	Routes      types.List   `tfsdk:"routes"`
	Status      types.String `tfsdk:"status"`
}

var (
	_ resource.ResourceWithConfigure   = (*projectResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*projectResource)(nil)
	_ resource.ResourceWithImportState = (*projectResource)(nil)
)

const defaultTimeout = "10m"

func (r *projectResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (r *projectResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A Butter project deployed from a directory of spec files (*.fn.hcl) and function sources, as `butter deploy DIR` deploys it.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "The project's name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true, Description: "The project's name, as its spec's project block sets it (checked).",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"directory": schema.StringAttribute{Required: true, Description: "The project's directory (relative paths are from where tofu or terraform runs: use path.module)."},
			"variables": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				Description: "Values of the variables the specs declare (variable blocks, read as var.NAME), as `butter deploy -var NAME=VALUE` sets them; numbers and bools as strings. They win over the project's butter.vars.hcl and the defaults; the environment's BUTTER_VAR_* are not read."},
			"timeout": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultTimeout),
				Description: "How long an apply waits for the revision's deployment to be healthy, and a destroy for the project to be gone (a Go duration)."},
			"purge_topics": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "Whether destroying the project deletes its Kafka topics too (`butter project delete -purge-topics`)."},
			"revision": schema.StringAttribute{Computed: true, Description: "The active revision: the content hash of the compiled project."},
			"functions": schema.MapAttribute{Computed: true, ElementType: types.StringType,
				Description: "A fingerprint of each function's settings and code, by name: the plan shows which functions an edit changes."},
			"routes": schema.ListAttribute{Computed: true, ElementType: types.StringType, Description: "The project's HTTP routes, \"METHOD /path -> target\"."},
			"status": schema.StringAttribute{Computed: true, Description: "The active revision's deployment status (healthy, deploying, failed, pending; recorded on a control plane without Nomad)."},
		},
	}
}

func (r *projectResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

// load loads the project in m's directory and checks its name.
func (r *projectResource) load(m *projectModel, diags *diag.Diagnostics) (*spec.Project, string) {
	dir := m.Directory.ValueString()
	var vals []spec.VarValue
	if !m.Variables.IsNull() {
		set := map[string]string{}
		diags.Append(m.Variables.ElementsAs(context.Background(), &set, false)...)
		for _, name := range slices.Sorted(maps.Keys(set)) {
			vals = append(vals, spec.VarValue{Name: name, Value: set[name], From: "variables"})
		}
	}
	proj, rep := spec.Load(dir, spec.WithVars(vals...))
	if proj == nil || rep.HasErrors() {
		var b strings.Builder
		_ = rep.WriteText(&b)
		abs, _ := filepath.Abs(dir)
		diags.AddAttributeError(path.Root("directory"), "Invalid Butter project", fmt.Sprintf("The project in %s does not load:\n\n%s", abs, strings.TrimSpace(b.String())))
		return nil, ""
	}
	if proj.Name != m.Name.ValueString() {
		diags.AddAttributeError(path.Root("name"), "Project name differs from the spec",
			fmt.Sprintf("%s holds project %q (its project block), not %q. Set name = %q, or point directory at project %q.", dir, proj.Name, m.Name.ValueString(), proj.Name, m.Name.ValueString()))
		return nil, ""
	}
	return proj, dir
}

// ModifyPlan compiles the directory and plans the revision, the
// functions' fingerprints and the routes it would deploy.
func (r *projectResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.client == nil {
		return // a destroy, or the provider's settings are not known yet
	}
	var plan projectModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || plan.Directory.IsUnknown() || plan.Name.IsUnknown() || !knownMap(plan.Variables) {
		return
	}
	if _, err := parseTimeout(plan.Timeout); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("timeout"), "Invalid timeout", err.Error())
		return
	}
	proj, dir := r.load(&plan, &resp.Diagnostics)
	if proj == nil {
		return
	}
	sum, err := deploy.Local(ctx, r.client, dir, proj)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("directory"), "Butter project does not compile", err.Error())
		return
	}
	plan.Revision = types.StringValue(sum.Revision)
	plan.Functions = stringMap(ctx, sum.Functions, &resp.Diagnostics)
	plan.Routes = stringList(ctx, sum.Routes, &resp.Diagnostics)
	// id stays unknown on a create, so that data sources reading the
	// project by it wait for the apply.
	plan.Status = types.StringUnknown()
	if !req.State.Raw.IsNull() {
		var state projectModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		if state.Revision.ValueString() == sum.Revision && state.Status.ValueString() == api.StatusHealthy {
			plan.Status = state.Status
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func parseTimeout(v types.String) (time.Duration, error) {
	s := defaultTimeout
	if !v.IsNull() && !v.IsUnknown() {
		s = v.ValueString()
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("must be positive")
	}
	if err != nil {
		return 0, fmt.Errorf("timeout %q: %v (a Go duration such as \"10m\")", s, err)
	}
	return d, nil
}

func (r *projectResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan projectModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if !r.apply(ctx, &plan, nil, &resp.Diagnostics) {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *projectResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state projectModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if !r.apply(ctx, &plan, &state, &resp.Diagnostics) {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// apply deploys plan's directory and follows the deployment until it is
// healthy, filling plan's computed values. A failed first deploy (state
// nil) deletes the project again, so that nothing is left that the state
// does not hold; a failed later one leaves the project on the revision
// the control plane rolled back to, which the state still names.
func (r *projectResource) apply(ctx context.Context, plan, state *projectModel, diags *diag.Diagnostics) bool {
	timeout, err := parseTimeout(plan.Timeout)
	if err != nil {
		diags.AddAttributeError(path.Root("timeout"), "Invalid timeout", err.Error())
		return false
	}
	name := plan.Name.ValueString()
	proj, dir := r.load(plan, diags)
	if proj == nil {
		return false
	}
	sum, err := deploy.Local(ctx, r.client, dir, proj)
	if err != nil {
		diags.AddAttributeError(path.Root("directory"), "Butter project does not compile", err.Error())
		return false
	}
	if planned := plan.Revision.ValueString(); !plan.Revision.IsUnknown() && planned != sum.Revision {
		diags.AddAttributeError(path.Root("directory"), "Project changed since the plan",
			fmt.Sprintf("The plan deploys revision %s, but %s now compiles to %s: its files changed after the plan. Plan again.", planned, dir, sum.Revision))
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if state == nil || state.Revision.ValueString() != sum.Revision || state.Status.ValueString() != api.StatusHealthy {
		out, err := deploy.Push(ctx, r.client, dir, proj, deploy.WithAuthor("terraform"), deploy.WithProgress(func(u deploy.Upload) {
			if u.Done {
				tflog.Info(ctx, fmt.Sprintf("uploaded %s (%d of %d, %d bytes)", u.Path, u.N, u.Total, u.Size))
			}
		}))
		if err != nil {
			apiError(diags, r.client, fmt.Sprintf("deploy project %q", name), err)
			return false
		}
		tflog.Info(ctx, fmt.Sprintf("revision %s of project %q is active (new: %v)", out.Revision, name, out.New))
		if out.Deployer {
			res, err := deploy.Watch(ctx, r.client, name, out.Revision, func(d api.DeployStatus) {
				tflog.Info(ctx, fmt.Sprintf("revision %s: %s %s", out.Revision, d.Status, d.Message))
			})
			if err == nil && res.Outcome != deploy.Healthy {
				err = fmt.Errorf("revision %s %s: %s (the project's active revision is now %s)", out.Revision, res.Status, res.Message, orNone(res.Active))
			}
			if err != nil {
				detail := err.Error()
				if state == nil {
					detail += "\n\n" + r.undo(name, plan.PurgeTopics.ValueBool(), timeout)
				} else {
					detail += fmt.Sprintf("\n\nThe state keeps revision %s.", state.Revision.ValueString())
				}
				diags.AddError(fmt.Sprintf("Butter: project %q did not become healthy", name), detail)
				return false
			}
		}
	}
	plan.ID = plan.Name
	plan.Revision = types.StringValue(sum.Revision)
	plan.Functions = stringMap(ctx, sum.Functions, diags)
	plan.Routes = stringList(ctx, sum.Routes, diags)
	st, _, err := r.client.Projects().Status(ctx, name, nil)
	if err != nil {
		apiError(diags, r.client, fmt.Sprintf("read project %q", name), err)
		return false
	}
	plan.Status = types.StringValue(statusOf(st))
	return !diags.HasError()
}

// undo deletes a project whose first deploy failed, and says so.
func (r *projectResource) undo(name string, purge bool, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := deleteProject(ctx, r.client, name, purge); err != nil {
		return fmt.Sprintf("Deleting the project again failed (%v): it is left on the control plane, outside the state. Delete it with `butter project delete %s`.", err, name)
	}
	return "The project was deleted again: nothing of this apply is left."
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// statusOf is the active revision's deployment status.
func statusOf(st *api.ProjectStatus) string {
	if st.Active == nil {
		return ""
	}
	if s := st.Active.Deployment.Status; s != "" {
		return s
	}
	return "recorded"
}

func (r *projectResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state projectModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		return
	}
	name := state.ID.ValueString()
	st, _, err := r.client.Projects().Status(ctx, name, nil)
	if api.StatusCode(err) == 404 || (err == nil && st.Deleting != nil) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("read project %q", name), err)
		return
	}
	state.Name = types.StringValue(name)
	state.Status = types.StringValue(statusOf(st))
	switch {
	case st.Active == nil:
		state.Revision = types.StringValue("")
		state.Functions = stringMap(ctx, nil, &resp.Diagnostics)
		state.Routes = stringList(ctx, nil, &resp.Diagnostics)
	case st.Active.ID != state.Revision.ValueString():
		// Deployed or rolled back outside this state: read what runs.
		rev, _, err := r.client.Revisions().Get(ctx, name, st.Active.ID, nil)
		if err != nil {
			apiError(&resp.Diagnostics, r.client, fmt.Sprintf("read revision %s of project %q", st.Active.ID, name), err)
			return
		}
		sum, err := deploy.Remote(rev)
		if err != nil {
			resp.Diagnostics.AddError("Butter: read the active revision", err.Error())
			return
		}
		state.Revision = types.StringValue(sum.Revision)
		state.Functions = stringMap(ctx, sum.Functions, &resp.Diagnostics)
		state.Routes = stringList(ctx, sum.Routes, &resp.Diagnostics)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *projectResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state projectModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	timeout, err := parseTimeout(state.Timeout)
	if err != nil {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := deleteProject(ctx, r.client, state.ID.ValueString(), state.PurgeTopics.ValueBool()); err != nil {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("delete project %q", state.ID.ValueString()), err)
	}
}

// deleteProject deletes a project and waits until it is gone (its job
// stopped and purged by the deployer).
func deleteProject(ctx context.Context, c *api.Client, name string, purge bool) error {
	if _, err := c.Projects().Delete(ctx, name, purge); err != nil && api.StatusCode(err) != 404 {
		return err
	}
	last := ""
	for {
		st, _, err := c.Projects().Status(ctx, name, nil)
		if api.StatusCode(err) == 404 {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Deleting != nil && st.Deleting.Message != last {
			last = st.Deleting.Message
			tflog.Info(ctx, fmt.Sprintf("deleting project %q: %s", name, last))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("project %q still being deleted (%s): %w", name, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (r *projectResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("timeout"), defaultTimeout)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("purge_topics"), false)...)
}

// knownMap reports whether m and each of its values are known: a value
// from another resource is unknown until that resource is applied.
func knownMap(m types.Map) bool {
	if m.IsUnknown() {
		return false
	}
	for _, e := range m.Elements() {
		if e.IsUnknown() {
			return false
		}
	}
	return true
}
