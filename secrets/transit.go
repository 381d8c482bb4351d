package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"os"
	"path/filepath"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// Connector secrets (a Kafka SASL password, say) are configuration, not a
// function's: they live in the spec and the control plane, encrypted with
// the project's Vault transit key, and only the pool decrypts them. The key is names.names.TransitKey(project).

// IsCiphertext says whether s looks like a Vault transit ciphertext.
func IsCiphertext(s string) bool {
	return strings.HasPrefix(s, "vault:v") && strings.Count(s, ":") >= 2
}

// Encrypt encrypts plaintext with the project's transit key.
func Encrypt(ctx context.Context, c *vault.Client, project, plaintext string) (string, error) {
	s, err := c.Logical().WriteWithContext(ctx, "transit/encrypt/"+names.TransitKey(project), map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString([]byte(plaintext)),
	})
	if err != nil {
		return "", fmt.Errorf("encrypt with transit key %s: %w", names.TransitKey(project), err)
	}
	ct, _ := s.Data["ciphertext"].(string)
	if ct == "" {
		return "", fmt.Errorf("encrypt with transit key %s: no ciphertext in Vault's answer", names.TransitKey(project))
	}
	return ct, nil
}

// Decrypt decrypts a ciphertext made by Encrypt. Its errors never quote
// the ciphertext or the plaintext.
func Decrypt(ctx context.Context, c *vault.Client, project, ciphertext string) (string, error) {
	if !IsCiphertext(ciphertext) {
		return "", errors.New("not a Vault transit ciphertext (vault:v<N>:...): encrypt the value with `butter secrets encrypt`")
	}
	s, err := c.Logical().WriteWithContext(ctx, "transit/decrypt/"+names.TransitKey(project), map[string]any{"ciphertext": ciphertext})
	if err != nil {
		return "", fmt.Errorf("decrypt with transit key %s: %w", names.TransitKey(project), err)
	}
	b64, _ := s.Data["plaintext"].(string)
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("decrypt with transit key %s: the plaintext is not base64", names.TransitKey(project))
	}
	return string(b), nil
}

// TaskClient is a Vault client for a pool under Nomad: the address from
// $BUTTER_VAULT_ADDR (the driver's vault_addr) or $VAULT_ADDR, the token
// from $VAULT_TOKEN or the task's secrets/vault_token, which Nomad writes
// and renews for the task's workload identity.
func TaskClient(secretsDir string) (*vault.Client, error) {
	addr := os.Getenv("BUTTER_VAULT_ADDR")
	if addr == "" {
		addr = os.Getenv("VAULT_ADDR")
	}
	if addr == "" {
		return nil, errors.New("no Vault address for the pool: set vault_addr in the butter driver's plugin config, or VAULT_ADDR")
	}
	token := os.Getenv("VAULT_TOKEN")
	if token == "" {
		b, err := os.ReadFile(filepath.Join(secretsDir, "vault_token"))
		if err != nil {
			return nil, fmt.Errorf("no Vault token for the pool (%w): the job's vault block gives the task one", err)
		}
		token = strings.TrimSpace(string(b))
	}
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

// EnvDecrypter decrypts with project's transit key at the Vault that
// $VAULT_ADDR and $VAULT_TOKEN name, for `butter dev` and `butter invoke
// -local`, which hold no task token; nil when $VAULT_ADDR is unset.
func EnvDecrypter(project string) func(ctx context.Context, ciphertext string) (string, error) {
	if os.Getenv("VAULT_ADDR") == "" {
		return nil
	}
	return func(ctx context.Context, ciphertext string) (string, error) {
		vc, err := TaskClient("")
		if err != nil {
			return "", err
		}
		return Decrypt(ctx, vc, project, ciphertext)
	}
}
