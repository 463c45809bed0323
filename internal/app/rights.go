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

// ledgerKey is the ledger key as the store's LoadIDKey loaded it.
type ledgerKey struct {
	key     *aead.Key
	created bool
}

// loader loads the ledger key at path for the store. A missing key is
// created only while the store holds nothing made with one (erasure-ledger
// entries, hashed subject ids): a new key would match none of them, so
// subjects would vanish and a restore would silently stop re-erasing.
func (l *ledgerKey) loader(path string) func(keyed bool) (*aead.Key, error) {
	return func(keyed bool) (*aead.Key, error) {
		k, created, err := keyfile.LoadOrCreateLedgerKey(path, !keyed)
		l.key, l.created = k, created
		return k, err
	}
}

// openRightsKeys completes the ledger key (loaded with the store) with the
// receipt signing key, loaded or, on first start, created.
func openRightsKeys(c config.RightsConfig, ledger ledgerKey, log interface{ Warn(string, ...any) }) (rightsKeys, error) {
	k := rightsKeys{ledger: ledger.key}
	if ledger.created {
		log.Warn("created the erasure-ledger key: back it up with the keyring identity; restore needs it", "file", c.LedgerKeyFile)
	}
	var created bool
	var err error
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
		// On a shared store, one replica at a time (store.go).
		a.once(ctx, "expiry-purge", func(ctx context.Context) {
			n, err := a.vault.PurgeExpired(ctx)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				a.cfg.Logger.Error("purging expired tokens", "err", err)
			case n > 0:
				a.cfg.Logger.Info("purged expired tokens", "records", n)
			}
		})
	})
}
