// Command nomad-driver-butter is the Nomad task-driver plugin that runs
// Butter pools. Put it in the client's plugin_dir with a matching block in
// the agent config (Nomad 1.10+ skips plugins without one):
//
//	plugin "nomad-driver-butter" {
//	  config {
//	    butter_path = "/usr/local/bin/butter"
//	  }
//	}
//
// The binary also serves Nomad's executor when run as `executor <config>`
// (the executor package's init does that): the driver starts pools under
// it, outside the plugin process.
package main

import (
	"context"

	"github.com/butterfn/butter/plugins/driver"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins"
)

func main() {
	plugins.ServeCtx(func(ctx context.Context, log hclog.Logger) interface{} {
		return driver.New(ctx, log)
	})
}
