package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/cli"
)

type jobCommand struct{}

func (c *jobCommand) Synopsis() string { return "Work with the Nomad job of a project" }

func (c *jobCommand) Help() string {
	return trimHelp(`
Usage: butter job <subcommand> [options] [args]

  Compile projects into Nomad jobs.

Subcommands:
    render    Render a project as a Nomad job (HCL or JSON)
`)
}

func (c *jobCommand) Run(args []string) int {
	fmt.Fprintln(os.Stderr, c.Help())
	return exitUsage
}

type renderCommand struct{ ui cli.Ui }

func (c *renderCommand) Synopsis() string { return "Render a project as a Nomad job (HCL or JSON)" }

func (c *renderCommand) Help() string {
	return trimHelp(`
Usage: butter job render [options] [dir]

  Validates the project in dir (default: the current directory) and renders
  it as one Nomad job: a task group per pool, run by the butter task driver,
  with artifacts fetched by content hash. The output is deterministic, so
  it can be committed and applied with nomad job run or Terraform:

      butter job render ./functions > app.nomad.hcl && nomad job run app.nomad.hcl

  Exit status: 0 on success, 1 when the project is invalid, 2 for a usage
  error.

Options:

  -format=hcl
    The output format: hcl (a jobspec) or json (as nomad job run -json and
    the jobs API take it).

  -out=<file>
    Write the job to this file instead of standard output.

  -blob-url=<url>
    Where artifacts fetch bundles from; each bundle is at
    <url>/sha256/<hex>: the control plane's address as the Nomad clients
    reach it. Default: with -upload, -address's blob URL; otherwise a
    local butter server: ` + jobs.DefaultBlobURL + `

  -upload
    Store the project's bundles and schemas on the control plane at
    -address (deploy rights on some project needed when ACLs are on)
    before rendering, and, on a server with ACLs, sign the artifact URLs
    so that Nomad clients fetch them without a token. With it,
    "butter job render -upload | nomad job run -" runs the project
    without butter deploy (no revision is recorded: butter status does
    not show the project, and gateways learn no routes from it).

  -git-sha=<sha>
    Record the git commit the job was rendered from in its meta.

  -datacenter=<dc>
    A datacenter the job may run in; repeat for several. Nomad's default
    applies when none is given.
` + varHelp + addrHelp)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *renderCommand) Run(args []string) int {
	fs := newFlagSet("job render")
	vf := addVarFlags(fs)
	format := fs.String("format", "hcl", "")
	out := fs.String("out", "", "")
	blobURL := fs.String("blob-url", jobs.DefaultBlobURL, "")
	upload := fs.Bool("upload", false, "")
	af := addAPIFlags(fs)
	gitSHA := fs.String("git-sha", "", "")
	var dcs stringList
	fs.Var(&dcs, "datacenter", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *format != "hcl" && *format != "json" {
		err = fmt.Errorf("-format must be hcl or json, not %q", *format)
	}
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	proj, rep := spec.Load(dir, vf.options()...)
	if err := rep.WriteText(os.Stderr); err != nil {
		c.ui.Error(err.Error())
		return exitInvalid
	}
	if proj == nil {
		return exitInvalid
	}
	var client *api.Client
	if *upload {
		if client, err = af.client(); err != nil {
			return failed(c.ui, err)
		}
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "blob-url" })
		if !explicit {
			*blobURL = client.Blobs().URL()
		}
	}
	opts := []jobs.Option{jobs.WithBlobURL(*blobURL)}
	if *gitSHA != "" {
		opts = append(opts, jobs.WithGitSHA(*gitSHA))
	}
	if len(dcs) > 0 {
		opts = append(opts, jobs.WithDatacenters(dcs...))
	}
	opts = append(opts, deploy.WithDeps(context.Background(), deps.Default(), dir))
	if err := jobs.CheckDeployable(proj); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	compiled, err := jobs.Compile(proj, opts...)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if *upload {
		ctx, cancel := context.WithTimeout(context.Background(), 5*callTimeout)
		live := newLiveLine(os.Stderr, isTerminal(os.Stderr))
		_, sigs, err := deploy.UploadArtifacts(ctx, client, dir, compiled, func(u deploy.Upload) {
			live.Update(fmt.Sprintf("==> [%d/%d] uploading %s: %s", u.N, u.Total, u.Path, fraction(u.Sent, int64(u.Size))))
		})
		cancel()
		live.Clear()
		if err != nil {
			return failed(c.ui, err)
		}
		if err := deploy.SignArtifacts(compiled.Job, sigs); err != nil {
			return failed(c.ui, err)
		}
		if len(sigs) < len(compiled.Artifacts) {
			fmt.Fprintln(os.Stderr, "Warning: the control plane signed no artifact URL (its ACLs are off, or it is a follower the leader has not given a signing key yet): with ACLs on, Nomad clients cannot fetch the artifacts; upload to the leader.")
		}
		fmt.Fprintf(os.Stderr, "Uploaded %d artifacts of project %q to %s; the job fetches them from %s.\n", len(compiled.Artifacts), proj.Name, client.Address(), *blobURL)
	}
	b, err := jobs.Render(compiled.Job, *format)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if *out == "" {
		os.Stdout.Write(b)
		return exitOK
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		c.ui.Error(fmt.Sprintf("Error: write %s: %v", *out, err))
		return exitInvalid
	}
	c.ui.Output(fmt.Sprintf("Wrote job %q (revision %s) to %s", *compiled.Job.ID, compiled.Revision, *out))
	return exitOK
}
