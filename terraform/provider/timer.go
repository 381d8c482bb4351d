package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/butterfn/butter/api"
)

// timerResource is butter_timer: a cron timer outside any project, which
// the control plane's leader fires into a Kafka topic (a project's own
// timers come from its cron triggers). Schedule, timezone and topic
// update in place.
type timerResource struct{ client *api.Client }

type timerModel struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Schedule  types.String `tfsdk:"schedule"`
	Timezone  types.String `tfsdk:"timezone"`
	Topic     types.String `tfsdk:"topic"`
	LastFired types.String `tfsdk:"last_fired"`
}

var (
	_ resource.ResourceWithConfigure   = (*timerResource)(nil)
	_ resource.ResourceWithImportState = (*timerResource)(nil)
)

func (r *timerResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_timer"
}

func (r *timerResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A cron timer outside any project: each tick is an event produced to topic (PUT /v1/timers/{id}). Needs a management token.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true, Description: "The timer's id.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"schedule":   schema.StringAttribute{Required: true, Description: "A cron expression (five fields, six with seconds, or @every DURATION)."},
			"timezone":   schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""), Description: "An IANA zone; empty for UTC."},
			"topic":      schema.StringAttribute{Required: true, Description: "The Kafka topic each tick is produced to."},
			"last_fired": schema.StringAttribute{Computed: true, Description: "When the timer last fired (RFC 3339), empty before its first tick."},
		},
	}
}

func (r *timerResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

// put defines the timer and reads it back.
func (r *timerResource) put(ctx context.Context, m *timerModel) error {
	t := &api.Timer{ID: m.Name.ValueString(), Schedule: m.Schedule.ValueString(), Timezone: m.Timezone.ValueString(), Topic: m.Topic.ValueString()}
	if _, err := r.client.Timers().Put(ctx, t); err != nil {
		return err
	}
	st, err := r.client.Timers().Get(ctx, t.ID)
	if err != nil {
		return err
	}
	m.ID = m.Name
	m.LastFired = types.StringValue(fired(st.LastFired))
	return nil
}

func fired(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (r *timerResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *timerResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

// save defines the planned timer (create and update alike) and records
// it as stored.
func (r *timerResource) save(ctx context.Context, plan tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics) {
	var m timerModel
	diags.Append(plan.Get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(diags)
		return
	}
	if err := r.put(ctx, &m); err != nil {
		apiError(diags, r.client, fmt.Sprintf("define timer %q", m.Name.ValueString()), err)
		return
	}
	diags.Append(state.Set(ctx, &m)...)
}

func (r *timerResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m timerModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || r.client == nil {
		return
	}
	st, err := r.client.Timers().Get(ctx, m.ID.ValueString())
	if api.StatusCode(err) == 404 {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("read timer %q", m.ID.ValueString()), err)
		return
	}
	if st.Project != "" {
		resp.Diagnostics.AddError("Butter: a project's timer", fmt.Sprintf("Timer %q belongs to project %q: it comes from a cron trigger of its spec, not from butter_timer.", st.ID, st.Project))
		return
	}
	m.Name, m.Schedule, m.Timezone, m.Topic = types.StringValue(st.ID), types.StringValue(st.Schedule), types.StringValue(st.Timezone), types.StringValue(st.Topic)
	m.LastFired = types.StringValue(fired(st.LastFired))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *timerResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m timerModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if err := r.client.Timers().Delete(ctx, m.ID.ValueString()); err != nil && api.StatusCode(err) != 404 {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("delete timer %q", m.ID.ValueString()), err)
	}
}

func (r *timerResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
