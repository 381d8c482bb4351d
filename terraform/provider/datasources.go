package provider

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
)

// projectDataSource is data "butter_project": a project's active
// revision, its status, functions and routes.
type projectDataSource struct{ client *api.Client }

type projectDataModel struct {
	Name      types.String `tfsdk:"name"`
	Revision  types.String `tfsdk:"revision"`
	Status    types.String `tfsdk:"status"`
	Functions types.Map    `tfsdk:"functions"`
	Routes    types.List   `tfsdk:"routes"`
}

var _ datasource.DataSourceWithConfigure = (*projectDataSource)(nil)

func (d *projectDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_project"
}

func (d *projectDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A project's active revision (`butter status PROJECT`).",
		Attributes: map[string]schema.Attribute{
			"name":      schema.StringAttribute{Required: true},
			"revision":  schema.StringAttribute{Computed: true},
			"status":    schema.StringAttribute{Computed: true},
			"functions": schema.MapAttribute{Computed: true, ElementType: types.StringType, Description: "Each function's fingerprint, by name (as butter_project has them)."},
			"routes":    schema.ListAttribute{Computed: true, ElementType: types.StringType},
		},
	}
}

func (d *projectDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

func (d *projectDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m projectDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	sum, st, ok := activeSummary(ctx, d.client, m.Name.ValueString(), resp)
	if !ok {
		return
	}
	m.Revision, m.Status = types.StringValue(sum.Revision), types.StringValue(statusOf(st))
	m.Functions = stringMap(ctx, sum.Functions, &resp.Diagnostics)
	m.Routes = stringList(ctx, sum.Routes, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// activeSummary reads a project's active revision and summarises it.
func activeSummary(ctx context.Context, c *api.Client, name string, resp *datasource.ReadResponse) (*deploy.Summary, *api.ProjectStatus, bool) {
	st, _, err := c.Projects().Status(ctx, name, nil)
	if err != nil {
		apiError(&resp.Diagnostics, c, fmt.Sprintf("read project %q", name), err)
		return nil, nil, false
	}
	if st.Active == nil {
		resp.Diagnostics.AddError("Butter: project has no revision", fmt.Sprintf("Project %q exists but was never deployed.", name))
		return nil, nil, false
	}
	rev, _, err := c.Revisions().Get(ctx, name, st.Active.ID, nil)
	if err != nil {
		apiError(&resp.Diagnostics, c, fmt.Sprintf("read revision %s of project %q", st.Active.ID, name), err)
		return nil, nil, false
	}
	sum, err := deploy.Remote(rev)
	if err != nil {
		resp.Diagnostics.AddError("Butter: read the active revision", err.Error())
		return nil, nil, false
	}
	return sum, st, true
}

// routesDataSource is data "butter_routes": the routes of one project,
// or of every project.
type routesDataSource struct{ client *api.Client }

type routesModel struct {
	Project types.String `tfsdk:"project"`
	Routes  types.List   `tfsdk:"routes"`
}

var _ datasource.DataSourceWithConfigure = (*routesDataSource)(nil)

func (d *routesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_routes"
}

func (d *routesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The HTTP routes the gateway serves: of one project, or of every project with an active revision.",
		Attributes: map[string]schema.Attribute{
			"project": schema.StringAttribute{Optional: true, Description: "A project's name; every project's routes when unset."},
			"routes":  schema.ListAttribute{Computed: true, ElementType: types.StringType, Description: "\"METHOD /path -> target\", sorted; each prefixed with \"project: \" when project is unset."},
		},
	}
}

func (d *routesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientOf(req.ProviderData, &resp.Diagnostics)
}

func (d *routesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m routesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var routes []string
	if !m.Project.IsNull() {
		sum, _, ok := activeSummary(ctx, d.client, m.Project.ValueString(), resp)
		if !ok {
			return
		}
		routes = sum.Routes
	} else {
		list, _, err := d.client.Projects().List(ctx, nil)
		if err != nil {
			apiError(&resp.Diagnostics, d.client, "list projects", err)
			return
		}
		for _, p := range list.Projects {
			st, _, err := d.client.Projects().Status(ctx, p, nil)
			if err != nil {
				apiError(&resp.Diagnostics, d.client, fmt.Sprintf("read project %q", p), err)
				return
			}
			if st.Active == nil {
				continue
			}
			for _, r := range st.Active.Routes {
				routes = append(routes, p+": "+r)
			}
		}
		sort.Strings(routes)
	}
	m.Routes = stringList(ctx, routes, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
