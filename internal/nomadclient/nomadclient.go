// Package nomadclient builds the Nomad API client that `butter server` and
// `butter gateway` use, the way the nomad CLI does: from api.DefaultConfig(),
// so NOMAD_TOKEN, NOMAD_CACERT, NOMAD_CAPATH, NOMAD_CLIENT_CERT,
// NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME, NOMAD_SKIP_VERIFY,
// NOMAD_NAMESPACE, NOMAD_REGION and NOMAD_HTTP_AUTH all apply, with only
// the address taken from a -nomad-addr flag when one is given.
package nomadclient

import (
	"fmt"
	"os"

	"github.com/hashicorp/nomad/api"
)

// Address is the Nomad address a process uses: flag when given, else
// $NOMAD_ADDR; "" means no Nomad.
func Address(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("NOMAD_ADDR")
}

// Config is api.DefaultConfig() (the NOMAD_* environment) with Address
// set to flag when flag is not empty.
func Config(flag string) *api.Config {
	cfg := api.DefaultConfig()
	if flag != "" {
		cfg.Address = flag
	}
	return cfg
}

// New returns a client for Config(flag).
func New(flag string) (*api.Client, error) {
	cfg := Config(flag)
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", cfg.Address, err)
	}
	return c, nil
}
