package backup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
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
//
// Before either pass, nothing in the inputs is trusted: the ledger's MAC is
// checked with the ledger key, and every backup's signature with the
// verification key the operator gives, before any backup is decrypted. A
// file that is only encrypted to the right recipient proves nothing (the
// recipient is a public key), and a ledger with one line deleted would
// bring that subject back. Both passes hash the ciphertext again as they
// decrypt it and stop if it is not what was verified (a file replaced
// during the restore).

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
	// LedgerSource names the ledger in errors: its file, or where it was
	// fetched from.
	LedgerSource string
	// VerifyKey verifies the backups' signatures: the public key of the
	// vault that took them (its receipt signing key). Required.
	VerifyKey ed25519.PublicKey
	// AllowUnauthenticated accepts version 1 backup and ledger files,
	// which carry no signature or MAC (written before tokenvault
	// authenticated them); each is logged and listed in the result. A
	// signature or MAC that is present but wrong is refused regardless.
	AllowUnauthenticated bool
	Logger               *slog.Logger
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Entries  int64 // store entries written
	Dropped  int64 // entries left out (re-erased subjects' data)
	ReErased int   // subjects re-erased
	Ledger   int   // ledger entries in the restored store
	Next     uint64
	// Unauthenticated names the legacy files accepted without a signature
	// or MAC (AllowUnauthenticated).
	Unauthenticated []string
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
	ledgerName := o.LedgerSource
	if ledgerName == "" {
		ledgerName = "the erasure ledger"
	}
	if o.Ledger.KeyID != kid {
		return res, fmt.Errorf("%s was made with ledger key %s, but the ledger key given is %s: it would match no subject; use the ledger key of the vault the ledger comes from", ledgerName, o.Ledger.KeyID, kid)
	}
	legacy := func(name string) {
		o.Logger.Warn("restore: accepting an unauthenticated legacy file, as allowed: nothing proves that the vault made it or that it is complete", "file", name)
		res.Unauthenticated = append(res.Unauthenticated, name)
	}
	if err := o.Ledger.Verify(o.LedgerKey); err != nil {
		if !errors.Is(err, ErrUnauthenticated) || !o.AllowUnauthenticated {
			return res, fmt.Errorf("%s: %w", ledgerName, err)
		}
		legacy(ledgerName)
	}
	if len(o.VerifyKey) != ed25519.PublicKeySize {
		return res, errors.New("no key to verify the backups' signatures with: give the public key of the vault that took them")
	}
	if err := checkEmptyDir(o.DataDir); err != nil {
		return res, err
	}
	// Check every signature and the chain before any decryption.
	var prev Header
	verified := make([]verifiedFile, len(o.Files))
	for i, f := range o.Files {
		h, digest, err := verifyFile(f, o.VerifyKey)
		if errors.Is(err, ErrUnauthenticated) && o.AllowUnauthenticated {
			legacy(f)
		} else if err != nil {
			return res, err
		}
		verified[i] = verifiedFile{h, digest}
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
	for i, f := range o.Files {
		err := withPayload(f, o.Identities, verified[i], func(r io.Reader) (badgerstore.PayloadInfo, error) {
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
	for i, f := range o.Files {
		err := withPayload(f, o.Identities, verified[i], func(r io.Reader) (badgerstore.PayloadInfo, error) {
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

// verifyFile reads a backup file's header and the SHA-256 of its
// ciphertext and checks its signature against pub. An unsigned (version 1)
// file returns its header and digest with ErrUnauthenticated.
func verifyFile(path string, pub ed25519.PublicKey) (Header, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, nil, fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	digest, err := ciphertextDigest(f)
	if err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	if !h.Signed() {
		return h, digest, fmt.Errorf("%s: %w: the backup is not signed (a tokenvault-backup/v1 file, written before tokenvault signed backups): nothing proves the vault made it", path, ErrUnauthenticated)
	}
	if err := h.verify(pub, digest); err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, digest, nil
}

// verifiedFile is what the first look at a backup file found: its
// header and the digest of its ciphertext (checked against the signature
// unless it is an accepted legacy file).
type verifiedFile struct {
	h      Header
	digest []byte
}

// withPayload opens a backup file, decrypts it and hands the payload to
// fn, checking that the payload's authenticated since and next match the
// file's header and that the ciphertext is the one whose digest was
// verified.
func withPayload(path string, ids []age.Identity, want verifiedFile, fn func(io.Reader) (badgerstore.PayloadInfo, error)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if h.Since != want.h.Since || h.Next != want.h.Next || !bytes.Equal(h.Signature, want.h.Signature) {
		return fmt.Errorf("%s changed during the restore: it is no longer the file whose signature was verified", path)
	}
	sum := sha256.New()
	ct := io.TeeReader(f, sum)
	dec, err := age.Decrypt(ct, ids...)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return fmt.Errorf("%s: the age identity given cannot decrypt this backup (it was encrypted to other recipients)", path)
	case err != nil:
		return fmt.Errorf("%s: damaged: not a readable age encryption: %v", path, err)
	}
	info, err := fn(dec)
	if err == nil {
		_, err = io.Copy(io.Discard, ct) // hash to the end, whatever age left unread
	}
	if err == nil && !bytes.Equal(sum.Sum(nil), want.digest) {
		return fmt.Errorf("%s changed during the restore: it is no longer the file whose signature was verified", path)
	}
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
