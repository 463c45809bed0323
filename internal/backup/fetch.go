package backup

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/vault"
)

// Client side of backups: write the server's encrypted stream to a file,
// fetch the erasure ledger.

// Progress reports a running backup: store bytes read and the estimated
// total.
type Progress func(read, total int64)

// FetchResult describes a written backup file.
type FetchResult struct {
	Header Header
	Bytes  int64 // file size
}

// Client is the client side of the BackupAdmin service that Fetch and
// FetchLedger use (*client.Client has it): the stream handling, its checks
// and typed errors live in the client package, once.
type Client interface {
	Backup(ctx context.Context, recipients []string, since uint64, w io.Writer, progress func(read, total int64)) (client.BackupEnd, error)
	ExportErasureLedger(ctx context.Context) (client.ErasureLedger, error)
}

var _ Client = (*client.Client)(nil)

// Fetch takes a backup through the BackupAdmin service and writes it to
// path: a full backup with since 0, else an incremental one (since is the
// Next of the backup it follows, see HeaderOf). The file appears only
// when complete (written as path.partial, synced, renamed); an existing
// file is never overwritten.
func Fetch(ctx context.Context, c Client, path string, recipients []string, since uint64, progress Progress) (FetchResult, error) {
	var res FetchResult
	if _, err := ParseRecipients(recipients); err != nil {
		return res, err
	}
	if _, err := os.Lstat(path); err == nil {
		return res, fmt.Errorf("%s exists: refusing to overwrite a backup", path)
	}
	partial := path + ".partial"
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, fmt.Errorf("creating the backup file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(partial)
		}
	}()
	// A placeholder of the signed header's size; the complete header is
	// written over it once the server has sent next and the signature.
	placeholder := Header{Since: since, KeyID: strings.Repeat("0", keyIDHex), Signature: make([]byte, ed25519.SignatureSize)}
	if _, err := f.Write(placeholder.Marshal()); err != nil {
		return res, err
	}
	end, err := c.Backup(ctx, recipients, since, f, progress)
	res.Bytes = int64(placeholder.Size()) + end.Bytes
	if errors.Is(err, client.ErrIncomplete) {
		return res, errors.New("the server ended the backup stream before the backup was complete")
	}
	if err != nil {
		return res, err
	}
	res.Header = Header{Since: since, Next: end.NextSince, KeyID: end.SigningKeyID, Signature: end.Signature}
	// The signature is checked by the restore, against a key the operator
	// trusts; here only its shape, so that the header has its fixed size.
	if len(res.Header.Signature) == 0 {
		return res, errors.New("the server sent an unsigned backup (a server older than this client?): a restore would refuse it")
	}
	if len(res.Header.Signature) != ed25519.SignatureSize || len(res.Header.KeyID) != keyIDHex || !lowerHex(res.Header.KeyID) {
		return res, errors.New("the server sent a malformed backup signature")
	}
	if _, err := f.WriteAt(res.Header.Marshal(), 0); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, err
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(partial, path); err != nil {
		return res, err
	}
	ok = true
	syncDir(filepath.Dir(path))
	return res, nil
}

// HeaderOf reads the header of a backup file (to chain an incremental
// backup to it: its Next is the next backup's since).
func HeaderOf(path string) (Header, error) { return readFileHeader(path) }

// FetchLedger downloads the erasure ledger. The server sends its MAC in
// the last message (Restore verifies it); a ledger from an older server
// has none.
func FetchLedger(ctx context.Context, c Client) (Ledger, error) {
	cl, err := c.ExportErasureLedger(ctx)
	if errors.Is(err, client.ErrIncomplete) {
		return Ledger{}, errors.New("the server sent no erasure ledger")
	}
	if err != nil {
		return Ledger{}, err
	}
	l := Ledger{KeyID: cl.KeyID, MAC: cl.MAC, Entries: make([]vault.LedgerEntry, len(cl.Entries))}
	for i, e := range cl.Entries {
		l.Entries[i] = vault.LedgerEntry{Hash: e.SubjectHash, ErasedAt: e.ErasedAt}
	}
	return l, nil
}

// WriteLedger writes a ledger file at path (mode 0600, not overwriting).
func WriteLedger(path string, l Ledger) error {
	if err := keyfile.WriteExclusive(path, l.Marshal()); err != nil {
		return fmt.Errorf("ledger file: %w", err)
	}
	return nil
}

// ReadLedger reads a ledger file.
func ReadLedger(path string) (Ledger, error) {
	f, err := os.Open(path)
	if err != nil {
		return Ledger{}, fmt.Errorf("ledger file: %w", err)
	}
	defer f.Close()
	l, err := ParseLedger(f)
	if err != nil {
		return l, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}
