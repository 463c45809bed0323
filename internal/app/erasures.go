package app

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault"
)

// Consent purposes and erasure events (issue 16): wiring only.

// consentSource answers vault.Options.ConsentRequired: the policy in
// force (reloads included) once security is open, else the config list.
// The vault is made before the policy is loaded, so the policy comes in
// through set.
type consentSource struct {
	policy  atomic.Pointer[security]
	devList []string
}

func newConsentSource(cfg config.Config) *consentSource {
	return &consentSource{devList: cfg.Consent.Purposes}
}

func (c *consentSource) set(sec *security) { c.policy.Store(sec) }

func (c *consentSource) required(purpose string) bool {
	if sec := c.policy.Load(); sec != nil && sec.policy != nil {
		return sec.policy.Current().ConsentRequired(purpose)
	}
	return slices.Contains(c.devList, purpose)
}

// registerConsumers registers the policy's erasure-event consumers, so
// that events are kept for them from now on even before they first
// connect. Consumers added by a reload are registered on their first
// watch.
func registerConsumers(ctx context.Context, v *vault.Vault, sec *security) error {
	if sec.policy == nil {
		return nil
	}
	err := v.RegisterConsumers(ctx, sec.policy.Current().Consumers())
	if errors.Is(err, vault.ErrUnsupported) {
		// Erasures still work without events; watches then fail with
		// FAILED_PRECONDITION naming the store's missing capability.
		sec.log.Warn("the policy names erasure-event consumers, but the store keeps no erasure events")
		return nil
	}
	return err
}

// trimErasureEvents drops acknowledged events and subject ids past the
// retention, hourly (and after every acknowledgement, in the vault).
func (a *App) trimErasureEvents(ctx context.Context) {
	every(ctx, time.Hour, true, func() {
		// On a shared store, one replica at a time (store.go).
		a.once(ctx, "erasure-event-trim", func(ctx context.Context) {
			if n, err := a.vault.TrimErasureEvents(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Logger.Error("trimming erasure events", "err", err)
			} else if n > 0 {
				a.cfg.Logger.Info("trimmed erasure events", "events", n)
			}
		})
	})
}
