package hcvault

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by [Config.SetDefaults].
const (
	DefaultMount   = "transit"
	DefaultKey     = "tokenvault"
	DefaultTimeout = 5 * time.Second
	// DefaultServiceAccountTokenFile is where Kubernetes mounts a pod's
	// service account token.
	DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// Auth methods for [AuthConfig.Method].
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// Config is the kek.vault configuration section. Field names in errors
// follow the YAML keys.
type Config struct {
	// Address is Vault's URL, e.g. "https://vault.example:8200". Plain
	// http:// is accepted only for a loopback host unless
	// AllowHTTPNonLoopback is set.
	Address string `yaml:"address"`
	// AllowHTTPNonLoopback accepts an http:// Address on a non-loopback
	// host. Off by default: data keys (in wrap and unwrap calls) and the
	// Vault token would then cross the network in the clear.
	AllowHTTPNonLoopback bool `yaml:"insecure_http_nonloopback"`
	// Token authenticates when Auth.Method is "token".
	Token string `yaml:"token"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `yaml:"namespace"`
	// Mount is where the transit engine is mounted (default "transit").
	Mount string `yaml:"mount"`
	// Key is the transit key's name (default "tokenvault").
	Key  string     `yaml:"key"`
	TLS  TLSConfig  `yaml:"tls"`
	Auth AuthConfig `yaml:"auth"`
	// Timeout bounds each call to Vault, retries included (default 5s).
	Timeout time.Duration `yaml:"timeout"`
}

// TLSConfig configures the connection to an https Address.
type TLSConfig struct {
	// CACert is a PEM file of CAs to trust instead of the system pool.
	CACert string `yaml:"ca_cert"`
	// ClientCert and ClientKey are PEM files for TLS client authentication.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// ServerName overrides the name checked in Vault's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks. DEKs travel to Vault in
	// the clear inside TLS, so this is for local experiments only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// AuthConfig selects how the provider obtains its Vault token.
type AuthConfig struct {
	// Method is "token" (default), "approle" or "kubernetes".
	Method string `yaml:"method"`
	// RoleID and one of SecretID / SecretIDFile are the AppRole credentials.
	// SecretIDFile is re-read at every login, so it can be rotated in place.
	RoleID       string `yaml:"role_id"`
	SecretID     string `yaml:"secret_id"`
	SecretIDFile string `yaml:"secret_id_file"`
	// Role is the Vault role for Kubernetes auth.
	Role string `yaml:"role"`
	// ServiceAccountTokenFile is re-read at every login: projected service
	// account tokens rotate.
	ServiceAccountTokenFile string `yaml:"service_account_token_file"`
	// MountPath is where the auth method is mounted (default: its name).
	MountPath string `yaml:"mount_path"`
}

// SetDefaults fills in unset fields.
func (c *Config) SetDefaults() {
	c.Mount = strings.Trim(c.Mount, "/")
	if c.Mount == "" {
		c.Mount = DefaultMount
	}
	if c.Key == "" {
		c.Key = DefaultKey
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.Namespace = strings.Trim(c.Namespace, "/")
	if c.Auth.Method == "" {
		c.Auth.Method = AuthToken
	}
	c.Auth.MountPath = strings.Trim(c.Auth.MountPath, "/")
	if c.Auth.MountPath == "" && c.Auth.Method != AuthToken {
		c.Auth.MountPath = c.Auth.Method
	}
	if c.Auth.Method == AuthKubernetes && c.Auth.ServiceAccountTokenFile == "" {
		c.Auth.ServiceAccountTokenFile = DefaultServiceAccountTokenFile
	}
}

// Path segments are restricted to a conservative set: they are spliced into
// request URLs, and a name with "/" or ".." could reach another endpoint.
var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	pathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
)

// Validate reports every problem at once, each naming its config key.
// Call SetDefaults first.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kek.vault.%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if c.Address == "" {
		bad("address", "must not be empty")
	} else if u, err := url.Parse(c.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("address", "must be an http:// or https:// URL")
	} else if u.Scheme == "http" && !loopbackHost(u.Hostname()) && !c.AllowHTTPNonLoopback {
		// Refused, not just warned about: a warning in a log nobody reads
		// does not stop data keys and the token from crossing the network
		// unencrypted.
		bad("address", "refusing plain http:// to the non-loopback host %q: data keys and the Vault token would cross the network unencrypted; use https:// or set kek.vault.insecure_http_nonloopback (TOKENVAULT_KEK_VAULT_INSECURE_HTTP_NONLOOPBACK=true)", u.Hostname())
	}
	if !validPath(c.Mount) {
		bad("mount", "must be a path of letters, digits, '_', '.' and '-'")
	}
	switch {
	case c.Key == "":
		bad("key", "must not be empty")
	case !validName(c.Key):
		bad("key", "must consist of letters, digits, '_', '.' and '-'")
	}
	if c.Namespace != "" && !validPath(c.Namespace) {
		bad("namespace", "must be a path of letters, digits, '_', '.' and '-'")
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if (c.TLS.ClientCert == "") != (c.TLS.ClientKey == "") {
		bad("tls", "client_cert and client_key must be set together")
	}

	a := c.Auth
	switch a.Method {
	case AuthToken:
		if c.Token == "" {
			bad("token", "must not be empty with auth.method %q", AuthToken)
		}
	case AuthAppRole:
		if a.RoleID == "" {
			bad("auth.role_id", "must not be empty with auth.method %q", AuthAppRole)
		}
		if (a.SecretID == "") == (a.SecretIDFile == "") {
			bad("auth.secret_id", "exactly one of auth.secret_id and auth.secret_id_file must be set with auth.method %q", AuthAppRole)
		}
	case AuthKubernetes:
		if a.Role == "" {
			bad("auth.role", "must not be empty with auth.method %q", AuthKubernetes)
		}
		if a.ServiceAccountTokenFile == "" {
			bad("auth.service_account_token_file", "must not be empty with auth.method %q", AuthKubernetes)
		}
	default:
		bad("auth.method", "must be %q, %q or %q, not %q", AuthToken, AuthAppRole, AuthKubernetes, a.Method)
	}
	if a.Method != AuthToken && !validPath(a.MountPath) {
		bad("auth.mount_path", "must be a path of letters, digits, '_', '.' and '-'")
	}
	return errors.Join(errs...)
}

// loopbackHost reports whether host (a URL's Hostname) is this machine:
// "localhost" or a loopback IP address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validName(s string) bool { return nameRE.MatchString(s) && s != "." && s != ".." }

func validPath(s string) bool {
	if !pathRE.MatchString(s) {
		return false
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// String hides credentials, so that printing a Config (%v, %+v) is safe.
func (c Config) String() string {
	type plain Config // no String method: avoids recursion
	return fmt.Sprintf("%+v", plain(c.redacted()))
}

// LogValue hides credentials when a Config is logged with slog.
func (c Config) LogValue() slog.Value {
	r := c.redacted()
	return slog.GroupValue(
		slog.String("address", r.Address),
		slog.Bool("insecure_http_nonloopback", r.AllowHTTPNonLoopback),
		slog.String("namespace", r.Namespace),
		slog.String("mount", r.Mount),
		slog.String("key", r.Key),
		slog.String("auth_method", r.Auth.Method),
		slog.String("token", r.Token),
		slog.Duration("timeout", r.Timeout),
	)
}

func (c Config) redacted() Config {
	const hidden = "REDACTED"
	if c.Token != "" {
		c.Token = hidden
	}
	if c.Auth.SecretID != "" {
		c.Auth.SecretID = hidden
	}
	return c
}
