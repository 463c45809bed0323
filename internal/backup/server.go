package backup

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// The server side of backups: a signed, age-encrypted backup of a
// [Source], and the erasure ledger with its MAC. The gRPC handler only
// relays what these methods produce.

// LedgerScanner pages through the erasure ledger in a stable order
// ([vault.Vault] is one).
type LedgerScanner interface {
	ScanLedger(ctx context.Context, fn func([]vault.LedgerEntry) error) error
}

// Keys authenticate what the service hands out, so that a restore can
// tell the vault's files from forgeries.
type Keys struct {
	// Signing signs backups (the vault's receipt signing key; the
	// signatures are domain-separated from receipts, see
	// [BackupSignedBytes]). Without it Backup fails.
	Signing ed25519.PrivateKey
	// Ledger MACs the exported erasure ledger (the vault's ledger key).
	// Without it ExportLedger fails.
	Ledger *aead.Key
}

// Errors of the service when the vault lacks what it needs. They unwrap
// to the vault's sentinels (or errors.ErrUnsupported), so that the gRPC
// layer maps them without knowing this package.
var (
	// ErrNoSource: the store cannot be backed up (it is not a [Source]).
	ErrNoSource = fmt.Errorf("this store does not support backups: %w", errors.ErrUnsupported)
	// ErrNoSigningKey: an unsigned backup is one a restore refuses: better
	// no backup than one that looks fine until the day it is needed.
	ErrNoSigningKey = fmt.Errorf("%w: this vault has no signing key to sign backups with", vault.ErrNotConfigured)
	// ErrNoLedgerKey: the vault keeps no erasure ledger.
	ErrNoLedgerKey = fmt.Errorf("%w: this vault keeps no erasure ledger", vault.ErrNotConfigured)
)

// Service takes backups of a store and exports the erasure ledger.
type Service struct {
	src    Source
	ledger LedgerScanner
	keys   Keys
}

// NewService returns the service over src (nil: Backup fails with
// ErrNoSource, the ledger export still works) and the ledger.
func NewService(src Source, ledger LedgerScanner, keys Keys) *Service {
	return &Service{src: src, ledger: ledger, keys: keys}
}

// ChunkSize bounds one chunk of backup ciphertext handed to send.
const ChunkSize = 256 << 10

// Backup takes a backup of everything changed after since (0: a full
// backup), age-encrypted to recipients, and hands its ciphertext to send
// in chunks of at most ChunkSize bytes, each with the payload bytes read
// so far and the estimated total. It returns next (the since of the
// following incremental backup) and the vault's signature over since,
// next and the ciphertext, with the signing key's id: the client writes
// them into the file's header (see [SignBackup]). Errors name no secret.
func (s *Service) Backup(ctx context.Context, recipients []string, since uint64, send func(chunk []byte, read, total int64) error) (next uint64, keyID string, sig []byte, err error) {
	if s.src == nil {
		return 0, "", nil, ErrNoSource
	}
	if len(s.keys.Signing) != ed25519.PrivateKeySize {
		return 0, "", nil, ErrNoSigningKey
	}
	recips, err := ParseRecipients(recipients)
	if err != nil {
		return 0, "", nil, err
	}
	var read int64
	ch := &chunker{send: send, read: &read, total: s.src.BackupSizeEstimate(), sum: sha256.New()}
	// Only age ciphertext leaves: the payload holds subject ids (in key
	// names) and wrapped keys, which must not cross the wire in the clear.
	enc, err := Encrypt(ch, recips)
	if err != nil {
		return 0, "", nil, err
	}
	next, err = WritePayload(counter{enc, &read}, s.src, since)
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = ch.flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", nil, ctx.Err()
		}
		return 0, "", nil, err
	}
	// The signature covers exactly the ciphertext sent: the client writes
	// it after the header unchanged, and the restore hashes it again.
	h := SignBackup(s.keys.Signing, since, next, ch.sum.Sum(nil))
	return next, h.KeyID, h.Signature, nil
}

// chunker hands what is written to it to send in chunks, hashing it for
// the signature.
type chunker struct {
	send  func(chunk []byte, read, total int64) error
	buf   []byte
	read  *int64
	total int64
	sum   hash.Hash
}

func (c *chunker) Write(p []byte) (int, error) {
	c.sum.Write(p)
	c.buf = append(c.buf, p...)
	for len(c.buf) >= ChunkSize {
		if err := c.emit(c.buf[:ChunkSize]); err != nil {
			return 0, err
		}
		c.buf = c.buf[ChunkSize:]
	}
	return len(p), nil
}

func (c *chunker) emit(b []byte) error { return c.send(b, *c.read, max(c.total, *c.read)) }

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.emit(c.buf)
	c.buf = nil
	return err
}

// counter counts the payload bytes (progress).
type counter struct {
	w io.Writer
	n *int64
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// ExportLedger hands send the erasure ledger page by page, with the
// ledger key's id, and returns that id and the ledger's MAC (see
// [LedgerSum]), which covers exactly the entries sent, in the order sent.
func (s *Service) ExportLedger(ctx context.Context, send func(keyID string, page []vault.LedgerEntry) error) (keyID string, mac []byte, err error) {
	if s.keys.Ledger == nil {
		return "", nil, ErrNoLedgerKey
	}
	kid, err := vault.LedgerKeyID(s.keys.Ledger)
	if err != nil {
		return "", nil, err
	}
	sum := NewLedgerSum(kid)
	err = s.ledger.ScanLedger(ctx, func(page []vault.LedgerEntry) error {
		for _, e := range page {
			sum.Add(e)
		}
		return send(kid, page)
	})
	if err != nil {
		return "", nil, err
	}
	mac, err = sum.MAC(s.keys.Ledger)
	if err != nil {
		return "", nil, err
	}
	return kid, mac, nil
}
