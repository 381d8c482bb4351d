// Command terraform-provider-butter is Butter's Terraform and OpenTofu
// provider (package terraform/provider), served over the plugin protocol.
// Terraform or OpenTofu starts it; it is not run by hand. docs/terraform.md
// says how to install it (a filesystem mirror or dev_overrides).
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/butterfn/butter/terraform/provider"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0"

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers (delve)")
	flag.Parse()
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: provider.Address,
		Debug:   *debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
