package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Restore.
//
// A restore never brings an erased subject back. It runs offline, before
// any server can open the directory, in two passes over the backup files:
//
//  1. read every subject key in the backups and hash its subject id with
//     the ledger key; a subject is re-erased when the erasure ledger
//     (the live vault's, supplied as a file or fetched, plus the ledger
//     inside the backups) names it with an erasure time not before the key
//     was created (a subject id reused after its erasure gets a new key,
//     which stays);
//  2. load the backups into a new directory, leaving out every entry that
//     belongs to a re-erased subject's key: its wrapped data key, records,
//     lookups, index entries. They are never written, so the restored
//     directory's files hold no trace of them.
//
// The load goes to a temporary directory beside the target, renamed into
// place only when everything succeeded: a failed restore leaves nothing
// behind, and an existing non-empty directory is refused up front.

// RestoreOptions describe a restore.
type RestoreOptions struct {
	// DataDir is the target; it must not exist or be empty.
	DataDir string
	// Files: a full backup, then its incremental backups in order.
	Files      []string
	Identities []age.Identity
	// LedgerKey hashes the restored subjects' ids; Ledger is the live
	// vault's erasure ledger (it must have been made with LedgerKey).
	LedgerKey *aead.Key
	Ledger    Ledger
	Logger    *slog.Logger
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Entries  int64 // store entries written
	Dropped  int64 // entries left out (re-erased subjects' data)
	ReErased int   // subjects re-erased
	Ledger   int   // ledger entries in the restored store
	Next     uint64
}

// Restore restores Files into DataDir (see above).
func Restore(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.Files) == 0 {
		return res, errors.New("no backup file given")
	}
	if o.LedgerKey == nil {
		return res, errors.New("no ledger key given")
	}
	kid, err := vault.LedgerKeyID(o.LedgerKey)
	if err != nil {
		return res, err
	}
	if o.Ledger.KeyID != kid {
		return res, fmt.Errorf("the erasure ledger was made with ledger key %s, but the ledger key given is %s: it would match no subject; use the ledger key of the vault the ledger comes from", o.Ledger.KeyID, kid)
	}
	if err := checkEmptyDir(o.DataDir); err != nil {
		return res, err
	}
	// Check the chain from the headers before any decryption.
	var prev Header
	for i, f := range o.Files {
		h, err := readFileHeader(f)
		if err != nil {
			return res, err
		}
		switch {
		case i == 0 && h.Since != 0:
			return res, fmt.Errorf("%s is an incremental backup (since %d): restore starts with a full backup", f, h.Since)
		case i > 0 && h.Since != prev.Next:
			return res, fmt.Errorf("%s starts at version %d, but %s ends at %d: give the backups in the order they were taken, without gaps", f, h.Since, o.Files[i-1], prev.Next)
		}
		prev = h
	}

	// Pass 1: find the subjects to re-erase.
	ledger := map[string]vault.LedgerEntry{}
	addLedger := func(e vault.LedgerEntry) {
		if old, ok := ledger[string(e.Hash)]; !ok || e.ErasedAt.After(old.ErasedAt) {
			ledger[string(e.Hash)] = e
		}
	}
	for _, e := range o.Ledger.Entries {
		addLedger(e)
	}
	type seenKey struct {
		subject string
		sk      vault.SubjectKey
	}
	var keys []seenKey
	for _, f := range o.Files {
		err := withPayload(f, o.Identities, func(r io.Reader) (badgerstore.PayloadInfo, error) {
			return badgerstore.ScanPayload(r,
				func(subject string, sk vault.SubjectKey) { keys = append(keys, seenKey{subject, sk}) },
				addLedger)
		})
		if err != nil {
			return res, err
		}
	}
	drop := map[vault.KeyID]bool{}
	erased := map[string]bool{}
	for _, k := range keys {
		h, err := vault.LedgerHash(o.LedgerKey, k.subject)
		if err != nil {
			return res, err
		}
		if e, ok := ledger[string(h)]; ok && !k.sk.Created.After(e.ErasedAt) {
			drop[k.sk.ID] = true
			erased[k.subject] = true
		}
	}
	res.ReErased = len(erased)

	// Pass 2: load into a staging directory, then move it into place.
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return res, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return res, err
	}
	staging, err := os.MkdirTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".restoring-")
	if err != nil {
		return res, fmt.Errorf("creating a staging directory: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(staging)
		}
	}()
	ld, err := badgerstore.NewLoader(staging, o.Logger)
	if err != nil {
		return res, err
	}
	for _, f := range o.Files {
		err := withPayload(f, o.Identities, func(r io.Reader) (badgerstore.PayloadInfo, error) {
			info, c, err := ld.Load(r, func(id vault.KeyID) bool { return drop[id] })
			res.Entries += c.Loaded
			res.Dropped += c.Dropped
			res.Next = info.Next
			return info, err
		})
		if err != nil {
			ld.Close()
			return res, err
		}
	}
	if err := ld.Close(); err != nil {
		return res, err
	}
	// The restored vault gets the current ledger, so its own backups and
	// exports carry every erasure.
	st, err := badgerstore.Open(staging, badgerstore.Options{}, o.Logger)
	if err != nil {
		return res, err
	}
	entries := make([]vault.LedgerEntry, 0, len(ledger))
	for _, e := range ledger {
		entries = append(entries, e)
	}
	err = st.PutLedgerEntries(ctx, entries)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("writing the erasure ledger: %w", err)
	}
	res.Ledger = len(entries)
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Rename(staging, abs); err != nil {
		return res, fmt.Errorf("moving the restored store into place: %w", err)
	}
	done = true
	syncDir(filepath.Dir(abs))
	return res, nil
}

// checkEmptyDir refuses a data directory that holds anything: a restore
// never mixes with or replaces existing data.
func checkEmptyDir(dir string) error {
	if dir == "" {
		return errors.New("--data-dir: must be set")
	}
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("data directory: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("data directory %s is not empty: restore only into a new or empty directory (nothing was changed)", dir)
	}
	return nil
}

func readFileHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return h, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// withPayload opens a backup file, decrypts it and hands the payload to
// fn, checking that the payload's authenticated since and next match the
// file's header.
func withPayload(path string, ids []age.Identity, fn func(io.Reader) (badgerstore.PayloadInfo, error)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec, err := age.Decrypt(f, ids...)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return fmt.Errorf("%s: the age identity given cannot decrypt this backup (it was encrypted to other recipients)", path)
	case err != nil:
		return fmt.Errorf("%s: damaged: not a readable age encryption: %v", path, err)
	}
	info, err := fn(dec)
	if errors.Is(err, badgerstore.ErrBadPayload) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err != nil {
		// The age reader reports tampering and truncation as errors.
		return fmt.Errorf("%s is corrupted or truncated: %v", path, err)
	}
	if info.Since != h.Since || info.Next != h.Next {
		return fmt.Errorf("%s: the header (since %d, next %d) does not match the encrypted payload (since %d, next %d): the file was altered or not fully written", path, h.Since, h.Next, info.Since, info.Next)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
