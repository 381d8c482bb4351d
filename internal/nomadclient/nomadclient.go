// Package nomadclient builds the Nomad API client that `butter server` and
// `butter gateway` use, the way the nomad CLI does: from api.DefaultConfig(),
// so NOMAD_TOKEN, NOMAD_CACERT, NOMAD_CAPATH, NOMAD_CLIENT_CERT,
// NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME, NOMAD_SKIP_VERIFY,
// NOMAD_NAMESPACE, NOMAD_REGION and NOMAD_HTTP_AUTH all apply, with only
// the address taken from a -nomad-addr flag when one is given.
package nomadclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

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

// Check lists one job with c, in its namespace, and returns Explain's
// account of why it cannot: the server and the gateway call it at start
// so that a missing or refused token is named before any deploy fails.
func Check(ctx context.Context, c *api.Client) error {
	q := (&api.QueryOptions{PerPage: 1}).WithContext(ctx)
	_, _, err := c.Jobs().List(q)
	return Explain(c, err)
}

// Explain adds to a Nomad API error what a 403 means for c's settings:
// no token given, or a token Nomad does not accept for the call. Other
// errors and nil are returned as they are.
func Explain(c *api.Client, err error) error {
	if err == nil {
		return nil
	}
	var uerr api.UnexpectedResponseError
	if (!errors.As(err, &uerr) || uerr.StatusCode() != 403) && !strings.Contains(err.Error(), "response code: 403") {
		return err
	}
	addr := c.Address()
	// The token comes only from $NOMAD_TOKEN (Config).
	if os.Getenv("NOMAD_TOKEN") == "" {
		return fmt.Errorf("nomad at %s refused the call: it has ACLs enabled and no token was given (set $NOMAD_TOKEN): %w", addr, err)
	}
	return fmt.Errorf("nomad at %s refused the token in $NOMAD_TOKEN: it is unknown or expired, or its policy does not allow this call: %w", addr, err)
}
