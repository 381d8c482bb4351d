// Package provider is terraform-provider-butter: Terraform and OpenTofu
// resources for Butter's control plane (terraform-plugin-framework).
// Every resource talks to the control plane through package api and
// deploys through package deploy, as `butter deploy` does: the provider
// never re-implements deploy logic.
//
// Resources: butter_project (a directory of specs and sources, deployed
// as a revision and followed until healthy), butter_api_key,
// butter_acl_policy and butter_acl_token. Data sources: butter_project
// and butter_routes. docs/terraform.md documents them.
package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/api"
)

// Address is the provider's registry address: `source =
// "butterfn/butter"` in a required_providers block.
const Address = "registry.opentofu.org/butterfn/butter"

// New returns the provider's constructor, as providerserver.Serve takes
// it.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &butterProvider{version: version} }
}

type butterProvider struct{ version string }

type providerModel struct {
	Address       types.String `tfsdk:"address"`
	Token         types.String `tfsdk:"token"`
	CAFile        types.String `tfsdk:"ca_file"`
	CertFile      types.String `tfsdk:"cert_file"`
	KeyFile       types.String `tfsdk:"key_file"`
	TLSServerName types.String `tfsdk:"tls_server_name"`
	NomadAddress  types.String `tfsdk:"nomad_address"`
	NomadToken    types.String `tfsdk:"nomad_token"`
}

// clients are what Configure hands the resources: the control plane's
// client and Nomad's (for butter_nomad_job).
type clients struct {
	butter *api.Client
	nomad  *nomadapi.Client
}

func (p *butterProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "butter"
	resp.Version = p.version
}

func (p *butterProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Butter's control plane. Each setting defaults to the environment variable the butter CLI reads.",
		Attributes: map[string]schema.Attribute{
			"address":         schema.StringAttribute{Optional: true, Description: "The control plane's API, such as http://127.0.0.1:4750 (BUTTER_ADDR)."},
			"token":           schema.StringAttribute{Optional: true, Sensitive: true, Description: "An ACL token's secret (BUTTER_TOKEN)."},
			"ca_file":         schema.StringAttribute{Optional: true, Description: "CA certificate to verify the control plane's (BUTTER_CACERT)."},
			"cert_file":       schema.StringAttribute{Optional: true, Description: "Client certificate for mutual TLS (BUTTER_CLIENT_CERT)."},
			"key_file":        schema.StringAttribute{Optional: true, Description: "Client key for mutual TLS (BUTTER_CLIENT_KEY)."},
			"tls_server_name": schema.StringAttribute{Optional: true, Description: "Server name to verify (BUTTER_TLS_SERVER_NAME)."},
			"nomad_address":   schema.StringAttribute{Optional: true, Description: "Nomad's HTTP API, for butter_nomad_job (NOMAD_ADDR; the other NOMAD_* variables Nomad's CLI reads apply too)."},
			"nomad_token":     schema.StringAttribute{Optional: true, Sensitive: true, Description: "A Nomad ACL token, for butter_nomad_job (NOMAD_TOKEN)."},
		},
	}
}

func (p *butterProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cfg := api.DefaultConfig()
	ncfg := nomadapi.DefaultConfig()
	for _, s := range []struct {
		v   types.String
		dst *string
	}{{m.Address, &cfg.Address}, {m.Token, &cfg.Token}, {m.CAFile, &cfg.TLS.CACert}, {m.CertFile, &cfg.TLS.ClientCert}, {m.KeyFile, &cfg.TLS.ClientKey}, {m.TLSServerName, &cfg.TLS.ServerName},
		{m.NomadAddress, &ncfg.Address}, {m.NomadToken, &ncfg.SecretID}} {
		if s.v.IsUnknown() {
			// Known only after another resource's apply: resources plan
			// with unknown values until then.
			return
		}
		if !s.v.IsNull() {
			*s.dst = s.v.ValueString()
		}
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		resp.Diagnostics.AddError("Butter provider configuration", err.Error())
		return
	}
	nomad, err := nomadapi.NewClient(ncfg)
	if err != nil {
		resp.Diagnostics.AddError("Butter provider configuration", "Nomad client: "+err.Error())
		return
	}
	c := &clients{butter: client, nomad: nomad}
	resp.ResourceData, resp.DataSourceData = c, c
}

func (p *butterProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		func() resource.Resource { return &projectResource{} },
		func() resource.Resource { return &apiKeyResource{} },
		func() resource.Resource { return &aclPolicyResource{} },
		func() resource.Resource { return &aclTokenResource{} },
		func() resource.Resource { return &timerResource{} },
		func() resource.Resource { return &nomadJobResource{} },
	}
}

func (p *butterProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		func() datasource.DataSource { return &projectDataSource{} },
		func() datasource.DataSource { return &routesDataSource{} },
	}
}

// clientsOf takes the configured clients from a Configure request's
// provider data; nil (and no error) before the provider is configured.
func clientsOf(data any, diags *diag.Diagnostics) *clients {
	if data == nil {
		return nil
	}
	c, ok := data.(*clients)
	if !ok {
		diags.AddError("Butter provider", fmt.Sprintf("unexpected provider data %T", data))
	}
	return c
}

// clientOf is the control plane's client of the provider data, or nil.
func clientOf(data any, diags *diag.Diagnostics) *api.Client {
	if c := clientsOf(data, diags); c != nil {
		return c.butter
	}
	return nil
}

// notConfigured is the error of a resource whose provider has no client
// yet (its settings were unknown at plan time and still are).
func notConfigured(diags *diag.Diagnostics) {
	diags.AddError("Butter provider not configured", "The provider's address or token is not known yet. Set them from values known before the apply.")
}

// apiError adds err, from a call to the control plane about what, as an
// error diagnostic that names the control plane and says what to check.
func apiError(diags *diag.Diagnostics, c *api.Client, what string, err error) {
	detail := fmt.Sprintf("The control plane at %s answered: %v", c.Address(), err)
	switch code := api.StatusCode(err); {
	case code == 401 || code == 403:
		detail += "\n\nThe token was refused or lacks the permission: set the provider's token (or BUTTER_TOKEN) to one whose policies allow this."
	case code == 0 && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		detail = fmt.Sprintf("No answer from the control plane at %s: %v\n\nIs `butter server` running there? Set the provider's address (or BUTTER_ADDR).", c.Address(), err)
	}
	diags.AddError("Butter: "+what, detail)
}

// stringList converts a Go string slice to a list value (empty, not
// null, for none).
func stringList(ctx context.Context, s []string, diags *diag.Diagnostics) types.List {
	if s == nil {
		s = []string{}
	}
	v, d := types.ListValueFrom(ctx, types.StringType, s)
	diags.Append(d...)
	return v
}

// stringMap converts a Go string map to a map value.
func stringMap(ctx context.Context, m map[string]string, diags *diag.Diagnostics) types.Map {
	if m == nil {
		m = map[string]string{}
	}
	v, d := types.MapValueFrom(ctx, types.StringType, m)
	diags.Append(d...)
	return v
}
