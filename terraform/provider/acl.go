package provider

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/butterfn/butter/api"
)

// aclPolicyResource is butter_acl_policy: a named policy of ACL rules
// (docs/security.md). Rules and description update in place.
type aclPolicyResource struct{ client *api.Client }

type aclPolicyModel struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Description types.String `tfsdk:"description"`
	Rules       types.String `tfsdk:"rules"`
}

var (
	_ resource.ResourceWithConfigure   = (*aclPolicyResource)(nil)
	_ resource.ResourceWithImportState = (*aclPolicyResource)(nil)
)

func (r *aclPolicyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_acl_policy"
}

func (r *aclPolicyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "An ACL policy (`butter acl policy apply`). Needs a management token.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"description": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("")},
			"rules":       schema.StringAttribute{Required: true, Description: "The policy's rules, in HCL (docs/security.md); the control plane checks them."},
		},
	}
}

func (r *aclPolicyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

func (r *aclPolicyResource) apply(ctx context.Context, m *aclPolicyModel) error {
	_, err := r.client.ACL().PolicyApply(ctx, m.Name.ValueString(), m.Description.ValueString(), m.Rules.ValueString())
	m.ID = m.Name
	return err
}

func (r *aclPolicyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

func (r *aclPolicyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.save(ctx, req.Plan, &resp.State, &resp.Diagnostics)
}

// save applies the planned policy (create and update alike) and records it.
func (r *aclPolicyResource) save(ctx context.Context, plan tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics) {
	var m aclPolicyModel
	diags.Append(plan.Get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(diags)
		return
	}
	if err := r.apply(ctx, &m); err != nil {
		apiError(diags, r.client, fmt.Sprintf("apply ACL policy %q", m.Name.ValueString()), err)
		return
	}
	diags.Append(state.Set(ctx, &m)...)
}

func (r *aclPolicyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m aclPolicyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || r.client == nil {
		return
	}
	p, err := r.client.ACL().PolicyGet(ctx, m.ID.ValueString())
	if api.StatusCode(err) == 404 {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("read ACL policy %q", m.ID.ValueString()), err)
		return
	}
	m.Name, m.Description, m.Rules = types.StringValue(p.Name), types.StringValue(p.Description), types.StringValue(p.Rules)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *aclPolicyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m aclPolicyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if err := r.client.ACL().PolicyDelete(ctx, m.ID.ValueString()); err != nil && api.StatusCode(err) != 404 {
		apiError(&resp.Diagnostics, r.client, fmt.Sprintf("delete ACL policy %q", m.ID.ValueString()), err)
	}
}

func (r *aclPolicyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// aclTokenResource is butter_acl_token: a client token bound to
// policies. Its secret is known once, at creation, and kept in the state
// (sensitive). Any change replaces the token.
type aclTokenResource struct{ client *api.Client }

type aclTokenModel struct {
	ID       types.String `tfsdk:"id"`
	Name     types.String `tfsdk:"name"`
	Policies types.List   `tfsdk:"policies"`
	Secret   types.String `tfsdk:"secret_id"`
}

var _ resource.ResourceWithConfigure = (*aclTokenResource)(nil)

func (r *aclTokenResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_acl_token"
}

func (r *aclTokenResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	resp.Schema = schema.Schema{
		Description: "A client ACL token bound to policies (`butter acl token create`). Needs a management token.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "The token's accessor id.", PlanModifiers: keep},
			"name": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""),
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"policies": schema.ListAttribute{Required: true, ElementType: types.StringType,
				PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()}},
			"secret_id": schema.StringAttribute{Computed: true, Sensitive: true, Description: "The token's secret, sent as X-Butter-Token.", PlanModifiers: keep},
		},
	}
}

func (r *aclTokenResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

func (r *aclTokenResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m aclTokenModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var policies []string
	resp.Diagnostics.Append(m.Policies.ElementsAs(ctx, &policies, false)...)
	tok, err := r.client.ACL().TokenCreate(ctx, &api.ACLTokenCreateRequest{Name: m.Name.ValueString(), Type: "client", Policies: policies})
	if err != nil {
		apiError(&resp.Diagnostics, r.client, "create an ACL token", err)
		return
	}
	m.ID, m.Secret = types.StringValue(tok.AccessorID), types.StringValue(tok.SecretID)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *aclTokenResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m aclTokenModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || r.client == nil {
		return
	}
	toks, err := r.client.ACL().TokenList(ctx)
	if err != nil {
		apiError(&resp.Diagnostics, r.client, "list ACL tokens", err)
		return
	}
	i := slices.IndexFunc(toks, func(t api.ACLToken) bool { return t.AccessorID == m.ID.ValueString() })
	if i < 0 {
		resp.State.RemoveResource(ctx)
		return
	}
	m.Name = types.StringValue(toks[i].Name)
	m.Policies = stringList(ctx, toks[i].Policies, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *aclTokenResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m aclTokenModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *aclTokenResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m aclTokenModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	if err := r.client.ACL().TokenDelete(ctx, m.ID.ValueString()); err != nil && api.StatusCode(err) != 404 {
		apiError(&resp.Diagnostics, r.client, "delete an ACL token", err)
	}
}
