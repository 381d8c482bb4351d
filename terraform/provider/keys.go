package provider

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/butterfn/butter/api"
)

// apiKeyResource is butter_api_key: a key callers of a project's routes
// send (docs/security.md). The key is known once, at creation, and kept
// in the state (sensitive); the control plane keeps its hash. Any change
// replaces the key.
type apiKeyResource struct{ client *api.Client }

type apiKeyModel struct {
	ID      types.String `tfsdk:"id"`
	Project types.String `tfsdk:"project"`
	Routes  types.List   `tfsdk:"routes"`
	Key     types.String `tfsdk:"key"`
}

var _ resource.ResourceWithConfigure = (*apiKeyResource)(nil)

func (r *apiKeyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_api_key"
}

func (r *apiKeyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Description: "An API key for a project's routes (`butter key create`).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "The key's SHA-256 (hex): what the control plane keeps.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"project": schema.StringAttribute{Required: true, PlanModifiers: replace},
			"routes": schema.ListAttribute{Optional: true, ElementType: types.StringType,
				Description:   "The routes (\"METHOD /path\") the key may call; none for every route of the project.",
				PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()}},
			"key": schema.StringAttribute{Computed: true, Sensitive: true, Description: "The key, sent as X-Butter-Key or a bearer token.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
		},
	}
}

func (r *apiKeyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

func (r *apiKeyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m apiKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var routes []string
	resp.Diagnostics.Append(m.Routes.ElementsAs(ctx, &routes, false)...)
	out, err := r.client.Keys().Create(ctx, m.Project.ValueString(), routes)
	if err != nil {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("create an API key for project %q", m.Project.ValueString()), err)
		return
	}
	m.ID, m.Key = types.StringValue(out.Hash), types.StringValue(out.Key)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *apiKeyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m apiKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || r.client == nil {
		return
	}
	keys, _, err := r.client.Keys().List(ctx, nil)
	if err != nil {
		apiError(&resp.Diagnostics, r.client, "list API keys", err)
		return
	}
	i := slices.IndexFunc(keys, func(k api.APIKey) bool { return k.Hash == m.ID.ValueString() })
	if i < 0 {
		resp.State.RemoveResource(ctx) // revoked outside the state
		return
	}
	m.Project = types.StringValue(keys[i].Project)
	if len(keys[i].Routes) > 0 || !m.Routes.IsNull() {
		m.Routes = stringList(ctx, keys[i].Routes, &resp.Diagnostics)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *apiKeyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	// Every attribute replaces the key: nothing updates in place.
	var m apiKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *apiKeyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m apiKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if err := r.client.Keys().Revoke(ctx, m.ID.ValueString()); err != nil && api.StatusCode(err) != 404 {
		apiError(&resp.Diagnostics, r.client, "revoke an API key", err)
	}
}
