package loadgen

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// TransitConfig names a HashiCorp Vault transit key to measure against.
type TransitConfig struct {
	Address string
	Token   string
	Mount   string // default "transit"
	Key     string // default "tvbench"
	// CreateKey creates the key (aes256-gcm96) if it does not exist, and
	// enables the transit engine at Mount if it is not mounted. Meant for
	// dev servers; against a shared Vault, create the key beforehand.
	CreateKey bool
	CACert    string
}

// transitTarget encrypts and decrypts through Vault transit directly, one
// HTTP call per tvbench call (batch_input for batches): what an
// application does today when it encrypts each field with Vault.
type transitTarget struct {
	cfg TransitConfig
	c   *api.Client

	// ciphertexts is filled before the load starts and only read during it.
	ciphertexts []string
}

var _ Target = (*transitTarget)(nil)

// NewTransitTarget returns a Vault transit target with a keep-alive pool
// of conns connections.
func NewTransitTarget(cfg TransitConfig, conns int) (Target, error) {
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	if cfg.Key == "" {
		cfg.Key = "tvbench"
	}
	vc := api.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: %w", vc.Error)
	}
	vc.Address = cfg.Address
	// Honest numbers: no client-side retries hiding failures or adding
	// latency.
	vc.MaxRetries = 0
	if tr, ok := vc.HttpClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConnsPerHost = conns
		tr.MaxConnsPerHost = 0
	}
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("-vault-ca-cert: %w", err)
		}
	}
	c, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	c.SetToken(cfg.Token)
	return &transitTarget{cfg: cfg, c: c}, nil
}

func (t *transitTarget) Kind() string        { return "vault-transit" }
func (t *transitTarget) Address() string     { return t.cfg.Address }
func (t *transitTarget) Supports(op Op) bool { return op == OpEncrypt || op == OpDecrypt }
func (t *transitTarget) Close() error        { return nil }

func (t *transitTarget) path(verb string) string {
	return strings.Trim(t.cfg.Mount, "/") + "/" + verb + "/" + t.cfg.Key
}

func (t *transitTarget) Setup(ctx context.Context, p *Profile) error {
	sec, err := t.c.Logical().ReadWithContext(ctx, t.path("keys"))
	if err != nil && !t.cfg.CreateKey {
		return fmt.Errorf("vault: reading transit key %s: %w", t.path("keys"), err)
	}
	if sec == nil || err != nil {
		if !t.cfg.CreateKey {
			return fmt.Errorf("vault: transit key %s does not exist (create it, or pass -vault-create-key)", t.path("keys"))
		}
		mounts, err := t.c.Sys().ListMountsWithContext(ctx)
		if err != nil {
			return fmt.Errorf("vault: listing mounts: %w", err)
		}
		if _, ok := mounts[strings.Trim(t.cfg.Mount, "/")+"/"]; !ok {
			if err := t.c.Sys().MountWithContext(ctx, t.cfg.Mount, &api.MountInput{Type: "transit"}); err != nil {
				return fmt.Errorf("vault: enabling transit at %s: %w", t.cfg.Mount, err)
			}
		}
		if _, err := t.c.Logical().WriteWithContext(ctx, t.path("keys"), map[string]any{"type": "aes256-gcm96"}); err != nil {
			return fmt.Errorf("vault: creating transit key: %w", err)
		}
	}
	if p.Mix[OpDecrypt] <= 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(7, 7))
	for len(t.ciphertexts) < p.Pool {
		n := min(100, p.Pool-len(t.ciphertexts))
		cts, err := t.encrypt(ctx, p, r, n)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		t.ciphertexts = append(t.ciphertexts, cts...)
	}
	return nil
}

func (t *transitTarget) encrypt(ctx context.Context, p *Profile, r *rand.Rand, n int) ([]string, error) {
	plain := func() string {
		return base64.StdEncoding.EncodeToString([]byte(generators[p.Kinds[r.IntN(len(p.Kinds))]](r)))
	}
	if n == 1 {
		sec, err := t.c.Logical().WriteWithContext(ctx, t.path("encrypt"), map[string]any{"plaintext": plain()})
		if err != nil {
			return nil, vaultErr(err)
		}
		ct, _ := sec.Data["ciphertext"].(string)
		if ct == "" {
			return nil, errors.New("vault: encrypt returned no ciphertext")
		}
		return []string{ct}, nil
	}
	in := make([]map[string]any, n)
	for i := range in {
		in[i] = map[string]any{"plaintext": plain()}
	}
	sec, err := t.c.Logical().WriteWithContext(ctx, t.path("encrypt"), map[string]any{"batch_input": in})
	if err != nil {
		return nil, vaultErr(err)
	}
	res, _ := sec.Data["batch_results"].([]any)
	out := make([]string, 0, n)
	for _, x := range res {
		m, _ := x.(map[string]any)
		if ct, _ := m["ciphertext"].(string); ct != "" {
			out = append(out, ct)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("vault: encrypt returned %d of %d ciphertexts", len(out), n)
	}
	return out, nil
}

func (t *transitTarget) Do(ctx context.Context, _ int, r *rand.Rand, op Op, p *Profile) ([]string, error) {
	switch op {
	case OpEncrypt:
		_, err := t.encrypt(ctx, p, r, p.Batch)
		return nil, err
	case OpDecrypt:
		var body map[string]any
		if p.Batch == 1 {
			body = map[string]any{"ciphertext": t.ciphertexts[r.IntN(len(t.ciphertexts))]}
		} else {
			in := make([]map[string]any, p.Batch)
			for i := range in {
				in[i] = map[string]any{"ciphertext": t.ciphertexts[r.IntN(len(t.ciphertexts))]}
			}
			body = map[string]any{"batch_input": in}
		}
		sec, err := t.c.Logical().WriteWithContext(ctx, t.path("decrypt"), body)
		if err != nil {
			return nil, vaultErr(err)
		}
		if sec == nil || len(sec.Data) == 0 {
			return nil, errors.New("vault: empty decrypt response")
		}
		return nil, nil
	}
	return nil, fmt.Errorf("vault transit does not support %s", op)
}

// httpStatusError carries Vault's HTTP status for the error table.
type httpStatusError struct {
	code int
	err  error
}

func (e *httpStatusError) Error() string   { return e.err.Error() }
func (e *httpStatusError) Unwrap() error   { return e.err }
func (e *httpStatusError) HTTPStatus() int { return e.code }

func vaultErr(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return &httpStatusError{code: re.StatusCode, err: err}
	}
	return err
}
