package hcvault

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// maxLoginBackoff caps the wait between failed re-login attempts, so that
// the provider recovers within a minute of Vault (or the credential) coming
// back.
const maxLoginBackoff = time.Minute

// maxCredentialFile bounds how much of a secret ID or service account token
// file is read; real ones are well under it.
const maxCredentialFile = 64 << 10

// authenticate returns a description of the client's token for renewal:
// for token auth it looks the configured token up, otherwise it logs in.
func (p *provider) authenticate(ctx context.Context) (*api.Secret, error) {
	if p.cfg.Auth.Method == AuthToken {
		return p.lookupToken(ctx)
	}
	return p.login(ctx)
}

func (p *provider) lookupToken(ctx context.Context) (*api.Secret, error) {
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	s, err := p.client.Auth().Token().LookupSelfWithContext(callCtx)
	if err != nil {
		return nil, p.classify(ctx, opLogin, nil, err)
	}
	ttl, err := s.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("hcvault: %s: token lookup: %w", opLogin.name, err)
	}
	renewable, err := s.TokenIsRenewable()
	if err != nil {
		return nil, fmt.Errorf("hcvault: %s: token lookup: %w", opLogin.name, err)
	}
	// LifetimeWatcher wants the shape a login returns.
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   p.cfg.Token,
		Renewable:     renewable,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// login logs in with AppRole or Kubernetes auth and switches the client to
// the new token.
func (p *provider) login(ctx context.Context) (*api.Secret, error) {
	method, err := p.authMethod()
	if err != nil {
		return nil, fmt.Errorf("hcvault: %s: %w", opLogin.name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hcvault: %s: %w", opLogin.name, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	// method.Login, not client.Auth().Login: the latter would store the new
	// token in loginClient, which must stay tokenless.
	s, err := method.Login(callCtx, p.loginClient)
	if err != nil {
		return nil, p.classify(ctx, opLogin, nil, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("hcvault: %s: Vault returned no token", opLogin.name)
	}
	p.client.SetToken(s.Auth.ClientToken)
	return s, nil
}

// authMethod builds the login method afresh for each login, reading the
// credential files now: secret IDs and projected service account tokens are
// rotated in place. The files are read here rather than by the auth
// packages so that a missing file is reported as such, not as Vault being
// unreachable.
func (p *provider) authMethod() (api.AuthMethod, error) {
	a := p.cfg.Auth
	switch a.Method {
	case AuthAppRole:
		secretID := a.SecretID
		if a.SecretIDFile != "" {
			s, err := readCredential(a.SecretIDFile)
			if err != nil {
				return nil, fmt.Errorf("kek.vault.auth.secret_id_file: %w", err)
			}
			secretID = s
		}
		return approle.NewAppRoleAuth(a.RoleID, &approle.SecretID{FromString: secretID}, approle.WithMountPath(a.MountPath))
	case AuthKubernetes:
		jwt, err := readCredential(a.ServiceAccountTokenFile)
		if err != nil {
			return nil, fmt.Errorf("kek.vault.auth.service_account_token_file: %w", err)
		}
		return kubernetes.NewKubernetesAuth(a.Role, kubernetes.WithServiceAccountToken(jwt), kubernetes.WithMountPath(a.MountPath))
	default:
		return nil, fmt.Errorf("auth method %q has no login", a.Method)
	}
}

func readCredential(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile))
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// keepAlive keeps the client's token valid until Close. It renews the token
// while Vault allows; when it no longer can (maximum TTL reached, or renewals
// failed until expiry during an outage) AppRole and Kubernetes log in again,
// while a configured token, which cannot be replaced, is reported.
func (p *provider) keepAlive(auth *api.Secret) {
	defer close(p.done)
	for {
		if !p.watch(auth) {
			return
		}
		if p.cfg.Auth.Method == AuthToken {
			p.logger.Error("the Vault token can no longer be renewed and expires soon; " +
				"use a periodic token, or approle or kubernetes auth, which log in again")
			<-p.ctx.Done()
			return
		}
		var ok bool
		if auth, ok = p.relogin(); !ok {
			return
		}
	}
}

// watch renews the token auth describes until that is no longer possible.
// It returns false when Close was called.
func (p *provider) watch(auth *api.Secret) bool {
	if auth.Auth.LeaseDuration <= 0 {
		// A token without a TTL (a root token, say) never expires.
		<-p.ctx.Done()
		return false
	}
	w, err := p.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth})
	if err != nil {
		// Only possible with a nil secret; let the caller log in again.
		p.logger.Error("cannot renew the Vault token", "err", err)
		return true
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return false
		case err := <-w.DoneCh():
			if err != nil {
				p.logger.Warn("Vault token renewal failed", "err", err)
			}
			return true
		case r := <-w.RenewCh():
			if r.Secret != nil && r.Secret.Auth != nil {
				p.logger.Debug("renewed the Vault token", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		}
	}
}

// relogin logs in until it succeeds, backing off exponentially. It returns
// false when Close was called.
func (p *provider) relogin() (*api.Secret, bool) {
	delay := time.Second
	for {
		auth, err := p.login(p.ctx)
		if err == nil {
			p.logger.Info("logged in to Vault again", "method", p.cfg.Auth.Method)
			return auth, true
		}
		if p.ctx.Err() != nil {
			return nil, false
		}
		p.logger.Warn("Vault login failed; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		delay = min(2*delay, maxLoginBackoff)
	}
}
