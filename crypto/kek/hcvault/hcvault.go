// Package hcvault is a [kek] provider backed by the transit secrets engine of
// HashiCorp Vault: the KEK never leaves Vault, and tokenvault sends it DEKs to
// encrypt ("wrap") and decrypt ("unwrap").
//
// # Wrapped format
//
// A wrapped DEK is transit's ciphertext string, stored as bytes, behind a
// prefix that says it is bound to associated data:
// "ad1:vault:v<N>:<base64>". The caller's associated data goes to transit
// as associated_data (an AEAD key type is required: aes256-gcm96,
// aes128-gcm96 or chacha20-poly1305, not derived, so not convergent), so
// Vault refuses to decrypt the blob with any other. Blobs written before
// wraps were bound are plain "vault:v<N>:<base64>", encrypted without
// associated data; they still unwrap, and [Provider.Rewrap] binds them.
// Removing the prefix from a bound blob does not help an attacker: Vault
// then decrypts without associated data, and authentication fails.
//
// N is the transit key version, so [Provider.Describe] needs no round trip,
// and blobs made under any version Vault still holds can be unwrapped.
// Transit's AES-256-GCM encrypts with a random nonce, so two wraps of the
// same DEK differ. Blobs are checked locally (prefix, version, base64
// alphabet, length limit) before they are sent anywhere.
//
// # Outages
//
// Every call is bounded by the caller's context and by [Config.Timeout],
// retries included: the HTTP client retries at most once, with a short wait,
// so that a Vault restart or leader election is absorbed but a dead Vault is
// reported promptly. The provider keeps no cache of unwrapped DEKs (that is
// the caller's decision), so while Vault is down or sealed every Wrap and
// Unwrap fails with an error wrapping [kek.ErrUnavailable], which the gRPC
// layer turns into codes.Unavailable. Nothing needs re-creating afterwards:
// the next call after Vault is back simply works.
//
// Errors map as follows: connection failures, timeouts, HTTP 429/5xx
// (including "Vault is sealed") → [kek.ErrUnavailable]; a blob Vault
// rejects as malformed, forged, from another key or under a retired version →
// [kek.ErrInvalidWrapped]; HTTP 403 → [ErrPermissionDenied]. Error texts
// carry Vault's message and the request path, never DEKs or tokens.
//
// # Authentication
//
// With "token" auth the configured token is renewed in the background while
// Vault allows it (an [api.LifetimeWatcher]); a token that reaches its
// maximum TTL cannot be replaced, which is logged. With "approle" and
// "kubernetes" the provider logs in at start and logs in again whenever the
// token can no longer be renewed; the credentials files are re-read at each
// login. [Provider.Close] stops that goroutine. The api client ignores
// VAULT_* environment variables: configuration comes from [Config] only, so
// that, say, a stray VAULT_SKIP_VERIFY cannot disable TLS checks.
//
// # Rotation
//
// [Provider.Rotate] is transit's key rotation. [Provider.Rewrap] decrypts
// and encrypts again (in batches), because transit's rewrap endpoint takes
// no associated_data (Vault 1.13): the DEKs pass through tokenvault's
// memory, as on every Unwrap, and are zeroed afterwards. [Provider.Retire]
// raises min_decryption_version and then trims versions below it with
// min_available_version, which deletes them from Vault's storage: a blob
// under a retired version, e.g. in an old database backup, can never be
// unwrapped again. Transit only trims when min_encryption_version is set
// too, so Retire raises it to the same floor (new wraps use the latest
// version regardless).
//
// The least-privilege policy this package needs is deploy/vault/tokenvault-policy.hcl.
package hcvault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// Provider is the Vault transit KEK provider, with every optional kek
// capability. Close stops background token renewal.
type Provider interface {
	kek.Wrapper
	kek.HealthChecker
	kek.Rotator
	Close() error
}

// ErrPermissionDenied means Vault refused the request (HTTP 403): the token is
// invalid or expired, or its policy lacks a path from
// deploy/vault/tokenvault-policy.hcl.
var ErrPermissionDenied = errors.New("permission denied by Vault")

// Limits on what is sent to and accepted from Vault. DEKs are 32 bytes; the
// limits are generous but stop a corrupted database row or a hostile
// response from turning into a huge request or allocation.
const (
	maxDEKSize     = 1024
	maxWrappedSize = 4096
	// maxBatch items go in one batch_input request; larger batches are split
	// so that a single request stays well under Vault's request size limit
	// and the per-call timeout stays meaningful.
	maxBatch = 256
)

// aeadKeyTypes are the transit key types that take associated_data.
var aeadKeyTypes = map[string]bool{"aes256-gcm96": true, "aes128-gcm96": true, "chacha20-poly1305": true}

var _ Provider = (*provider)(nil)

type provider struct {
	cfg    Config
	logger *slog.Logger
	client *api.Client
	// loginClient carries no token: logins must not send a stale one.
	loginClient *api.Client

	encryptPath, decryptPath, keyPath string

	// ctx lives until Close; it stops the token renewal goroutine, which
	// closes done when it has returned.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// reloginMu and lastRelogin bound the log-ins that requests refused
	// with HTTP 403 trigger (see do): one a second at most, however many
	// requests were refused at once.
	reloginMu   sync.Mutex
	lastRelogin time.Time
}

// New validates cfg, connects to Vault and authenticates. It fails if Vault
// cannot be reached (an error wrapping [kek.ErrUnavailable]) or refuses the
// credentials; it does not check the transit key: call Healthy for that.
// logger may be nil.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (Provider, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "kek/hcvault")

	client, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	loginClient, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	loginClient.ClearToken()
	warnInsecure(cfg, logger)

	p := &provider{
		cfg:         cfg,
		logger:      logger,
		client:      client,
		loginClient: loginClient,
		encryptPath: cfg.Mount + "/encrypt/" + cfg.Key,
		decryptPath: cfg.Mount + "/decrypt/" + cfg.Key,
		keyPath:     cfg.Mount + "/keys/" + cfg.Key,
		done:        make(chan struct{}),
	}
	auth, err := p.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.keepAlive(auth)
	logger.Info("using HashiCorp Vault transit KEK", "vault", cfg)
	return p, nil
}

// newAPIClient builds the api client from cfg alone. api.DefaultConfig is
// avoided because it reads VAULT_* variables (VAULT_SKIP_VERIFY,
// VAULT_CACERT, VAULT_MAX_RETRIES...) that would silently override cfg.
func newAPIClient(cfg Config) (*api.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	conf := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// The api client follows Vault's standby redirects itself (and
			// refuses https→http downgrades); net/http must not.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// No api-level Timeout: the api client's raw requests cancel that
		// deadline as they return, before the caller has read the body,
		// which breaks large batch responses. The per-call context (see do)
		// and the http.Client timeout above bound every request instead.
		// One quick retry absorbs a restart or leader change; more would
		// only delay the Unavailable answer when Vault is really down.
		MaxRetries:   1,
		MinRetryWait: cfg.Timeout / 20,
		MaxRetryWait: cfg.Timeout / 5,
	}
	if err := conf.ConfigureTLS(&api.TLSConfig{
		CACert:        cfg.TLS.CACert,
		ClientCert:    cfg.TLS.ClientCert,
		ClientKey:     cfg.TLS.ClientKey,
		TLSServerName: cfg.TLS.ServerName,
		Insecure:      cfg.TLS.InsecureSkipVerify,
	}); err != nil {
		return nil, fmt.Errorf("kek.vault.tls: %w", err)
	}
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("hcvault: create Vault client: %w", err)
	}
	// NewClient still picks up VAULT_TOKEN and VAULT_NAMESPACE: override both.
	client.SetToken(cfg.Token)
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	} else {
		client.ClearNamespace()
	}
	return client, nil
}

func warnInsecure(cfg Config, logger *slog.Logger) {
	u, err := url.Parse(cfg.Address)
	if err != nil {
		return
	}
	if u.Scheme == "http" {
		if !loopbackHost(u.Hostname()) { // allowed by kek.vault.insecure_http_nonloopback
			logger.Warn("Vault address is plain http: DEKs and the Vault token cross the network unencrypted", "address", cfg.Address)
		}
	}
	if cfg.TLS.InsecureSkipVerify {
		logger.Warn("TLS certificate verification of Vault is disabled (kek.vault.tls.insecure_skip_verify)")
	}
}

// Close stops token renewal. It does not revoke the token: another instance
// may share it (token auth), and an AppRole token simply expires.
func (p *provider) Close() error {
	p.cancel()
	<-p.done
	return nil
}

// Wrap encrypts dek with transit encrypt, bound to ad (transit's
// associated_data), and returns the bound form boundPrefix + ciphertext.
func (p *provider) Wrap(ctx context.Context, dek, ad []byte) ([]byte, error) {
	if err := checkWrap(dek, ad); err != nil {
		return nil, fmt.Errorf("hcvault: wrap: %w", err)
	}
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := p.do(ctx, opWrap, http.MethodPut, p.encryptPath, encryptItem{Plaintext: dek, AssociatedData: ad}, &out); err != nil {
		return nil, err
	}
	if err := checkCiphertext(opWrap, out.Ciphertext); err != nil {
		return nil, err
	}
	return bound(out.Ciphertext), nil
}

// Unwrap decrypts a blob with transit decrypt, passing ad along for a bound
// blob (an unbound one was made without associated data). The caller owns
// (and zeroes) the result.
func (p *provider) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	if err := kek.CheckAD(ad); err != nil {
		return nil, fmt.Errorf("hcvault: unwrap: %w", err)
	}
	req, err := decryptRequest(wrapped, ad)
	if err != nil {
		return nil, fmt.Errorf("hcvault: unwrap: %w", err)
	}
	// Decoding "plaintext" straight into a []byte (encoding/json reads base64
	// into byte slices) keeps the DEK out of immutable, unzeroable strings.
	var out struct {
		Plaintext []byte `json:"plaintext"`
	}
	if err := p.do(ctx, opUnwrap, http.MethodPut, p.decryptPath, req, &out); err != nil {
		return nil, err
	}
	if len(out.Plaintext) == 0 {
		return nil, fmt.Errorf("hcvault: unwrap: Vault returned an empty plaintext")
	}
	return out.Plaintext, nil
}

// Healthy reads the transit key: it proves Vault is reachable and unsealed,
// the token is valid, the policy allows reading the key, and the key exists
// and can encrypt.
func (p *provider) Healthy(ctx context.Context) error {
	info, err := p.readKey(ctx, opHealth)
	if err != nil {
		return err
	}
	if !info.SupportsEncryption || !info.SupportsDecryption {
		return fmt.Errorf("hcvault: transit key %q at %q (type %s) cannot encrypt and decrypt; create it with type aes256-gcm96", p.cfg.Key, p.cfg.Mount, info.Type)
	}
	// Wraps are bound to associated data, which transit supports for its
	// AEAD key types only; a derived key would also demand a context.
	if !aeadKeyTypes[info.Type] || info.Derived {
		return fmt.Errorf("hcvault: transit key %q at %q (type %s, derived %v) cannot bind associated data; create it with type aes256-gcm96, not derived", p.cfg.Key, p.cfg.Mount, info.Type, info.Derived)
	}
	return nil
}

func checkWrap(dek, ad []byte) error {
	switch {
	case len(dek) == 0:
		return errors.New("empty DEK")
	case len(dek) > maxDEKSize:
		return fmt.Errorf("DEK of %d bytes exceeds the %d-byte limit", len(dek), maxDEKSize)
	}
	return kek.CheckAD(ad)
}
