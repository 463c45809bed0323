package app

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// rightsKeys are the key files' contents.
type rightsKeys struct {
	signing ed25519.PrivateKey
	ledger  *aead.Key
}

// openRightsKeys loads (or, on first start, creates) the receipt signing
// key and the ledger key. A missing ledger key is created only while the
// store has no ledger entries: a new key would match none of them, and a
// restore would silently stop re-erasing.
func openRightsKeys(ctx context.Context, c config.RightsConfig, store vault.LedgerStore, log interface{ Warn(string, ...any) }) (rightsKeys, error) {
	var k rightsKeys
	entries, err := store.LedgerEntries(ctx, nil, 1)
	if err != nil {
		return k, err
	}
	var created bool
	if k.ledger, created, err = keyfile.LoadOrCreateLedgerKey(c.LedgerKeyFile, len(entries) == 0); err != nil {
		return k, err
	}
	if created {
		log.Warn("created the erasure-ledger key: back it up with the keyring identity; restore needs it", "file", c.LedgerKeyFile)
	}
	if k.signing, created, err = keyfile.LoadOrCreateSigningKey(c.SigningKeyFile); err != nil {
		k.ledger.Zero()
		return k, err
	}
	if created {
		log.Warn("created the erasure-receipt signing key", "file", c.SigningKeyFile)
	}
	return k, nil
}

// rightsOptions turns the rights section and its keys into the domain's
// options.
func rightsOptions(c config.RightsConfig, k rightsKeys, backupRetention time.Duration) vault.RightsOptions {
	o := vault.RightsOptions{LedgerKey: k.ledger, ReceiptKey: k.signing,
		BackupHorizon: c.RotationInterval + backupRetention, DefaultTTL: map[format.Kind]time.Duration{}}
	for name, d := range c.Retention {
		kind, _ := format.ParseKind(name) // checked by Validate
		o.DefaultTTL[kind] = d
	}
	return o
}

// purgeExpired purges expired tokens every interval until ctx ends.
func (a *App) purgeExpired(ctx context.Context) {
	every(ctx, a.cfg.Rights.PurgeInterval, true, func() {
		n, err := a.vault.PurgeExpired(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			a.cfg.Logger.Error("purging expired tokens", "err", err)
		case n > 0:
			a.cfg.Logger.Info("purged expired tokens", "records", n)
		}
	})
}
