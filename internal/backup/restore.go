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

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
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
// The restore writes through a [Loader], which the wiring's [Opener]
// makes for the kind of store restored into: the restored store appears
// only when everything succeeded (Finish), a failed restore leaves
// nothing behind (Close), and an existing store is refused up front. The
// badger store's loader fills a temporary directory beside the target
// and renames it into place.
//
// Before either pass, nothing in the inputs is trusted: the ledger's MAC is
// checked with the ledger key, and every backup's signature with the
// verification key the operator gives, before any backup is decrypted. A
// file that is only encrypted to the right recipient proves nothing (the
// recipient is a public key), and a ledger with one line deleted would
// bring that subject back. Both passes hash the ciphertext again as they
// decrypt it and stop if it is not what was verified (a file replaced
// during the restore).

// A Loader fills a new store from backup payloads: the restore's two
// passes call Scan for every frame, then Load once per payload, then
// Finish. Its methods use only plain and vault types, so that a store
// implements it without importing this package. The frames hold the
// entries every store's payloads hold (see payload.go): a loader reads
// backups of any kind of store.
type Loader interface {
	// UseLedgerKey hands the loader the ledger key, before any other
	// call: stores keep subject ids hashed and sealed under keys derived
	// from it ([vault.StoreSubjectHash]), so Scan needs it to name the
	// subjects of a backup, and the restored store to address them. The
	// loader keeps its own copy.
	UseLedgerKey(k *aead.Key) error
	// Scan reports every subject key and erasure-ledger entry in one frame
	// (deletions skipped), writing nothing: the restore finds the subjects
	// to re-erase before anything is written.
	Scan(frame []byte, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) error
	// Load writes one payload's entries, leaving out every entry that
	// belongs to a key id for which drop returns true, and counts what it
	// wrote and left out. Payloads come in order (a full backup, then its
	// incrementals).
	Load(frames Frames, drop func(vault.KeyID) bool) (loaded, dropped int64, err error)
	// Finish adds ledger to the erasure ledger of the restored store, makes
	// it durable and puts it in place. After Finish, Close does nothing.
	Finish(ctx context.Context, ledger []vault.LedgerEntry) error
	// Close abandons an unfinished restore, leaving nothing behind.
	Close() error
}

// An Opener makes the Loader of a restore into target (for the badger
// store a data directory, which must not exist or be empty), refusing a
// target that holds a store.
type Opener func(target string, logger *slog.Logger) (Loader, error)

// OpenerOf is the Opener of a store's loader constructor, which returns
// the store's own loader type (Go does not convert a func's result type
// on its own); a failed constructor's nil loader stays a nil Loader.
func OpenerOf[L Loader](open func(target string, logger *slog.Logger) (L, error)) Opener {
	return func(target string, logger *slog.Logger) (Loader, error) {
		l, err := open(target, logger)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// RestoreOptions describe a restore.
type RestoreOptions struct {
	// DataDir is the target, handed to Open (for the badger store a
	// directory that must not exist or be empty).
	DataDir string
	// Open makes the loader of the kind of store restored into (the
	// wiring's choice: this package knows no store).
	Open Opener
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
	// Holds are the live vault's legal hold classes (config "holds"): a
	// backup taken before a subject's erasure holds its held data but not
	// the hold's schedule, which the restore then makes from the ledger's
	// erasure time and the class's keep (see restoreHolds).
	Holds map[string]vault.HoldClass
}

// A HoldLoader is a Loader that can schedule legal holds in the restored
// store ([vault.HoldStore]): Finish, plus the holds to schedule (each
// hold whose key was restored and is not scheduled yet).
type HoldLoader interface {
	FinishWithHolds(ctx context.Context, ledger []vault.LedgerEntry, holds []vault.Hold) error
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Entries  int64 // store entries written
	Dropped  int64 // entries left out (re-erased subjects' data)
	ReErased int   // subjects re-erased
	Held     int   // held keys of erased subjects, kept and scheduled (legal holds)
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
	if o.DataDir == "" {
		return res, errors.New("--data-dir: must be set")
	}
	if o.Open == nil {
		return res, errors.New("no store to restore into")
	}
	ld, err := o.Open(o.DataDir, o.Logger)
	if err != nil {
		return res, err
	}
	defer ld.Close()
	if err := ld.UseLedgerKey(o.LedgerKey); err != nil {
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
	onKey := func(subject string, sk vault.SubjectKey) { keys = append(keys, seenKey{subject, sk}) }
	for i, f := range o.Files {
		_, err := withPayload(f, o.Identities, verified[i], func(frames Frames) error {
			return frames(func(frame []byte) error { return ld.Scan(frame, onKey, addLedger) })
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
	held, err := restoreHolds(o.LedgerKey, o.Holds, ledger, drop, func(yield func(string, vault.SubjectKey)) {
		for _, k := range keys {
			yield(k.subject, k.sk)
		}
	})
	if err != nil {
		return res, err
	}
	holds := make([]vault.Hold, len(held))
	for i, h := range held {
		holds[i] = h.hold
	}
	res.Held = len(holds)

	// Pass 2: load, then put the restored store in place.
	for i, f := range o.Files {
		info, err := withPayload(f, o.Identities, verified[i], func(frames Frames) error {
			loaded, dropped, err := ld.Load(frames, func(id vault.KeyID) bool { return drop[id] })
			res.Entries += loaded
			res.Dropped += dropped
			return err
		})
		if err != nil {
			return res, err
		}
		res.Next = info.Next
	}
	// The restored vault gets the current ledger, so its own backups and
	// exports carry every erasure.
	entries := make([]vault.LedgerEntry, 0, len(ledger))
	for _, e := range ledger {
		entries = append(entries, e)
	}
	if len(holds) > 0 {
		hl, ok := ld.(HoldLoader)
		if !ok {
			return res, errors.New("the backups hold data under legal hold of erased subjects, but the store restored into cannot schedule holds")
		}
		err = hl.FinishWithHolds(ctx, entries, holds)
	} else {
		err = ld.Finish(ctx, entries)
	}
	if err != nil {
		return res, err
	}
	res.Ledger = len(entries)
	return res, nil
}

// ErrHoldClassNotConfigured: the data to restore or re-erase holds data
// of an erased subject under a hold class the holds configuration given
// does not name, so its hold could not keep its end.
var ErrHoldClassNotConfigured = errors.New("the holds configuration given does not name a hold class of an erased subject's held data")

// subjectHold is a hold to schedule and the real subject it belongs to.
type subjectHold struct {
	subject string
	entry   vault.LedgerEntry // the subject's erasure
	hold    vault.Hold
}

// restoreHolds finds the held data of erased subjects among the restored
// keys (Restore) or a restored store's keys (ReErase). A hold key (the
// key of a pseudo-subject, [vault.HoldSubject]) enters the ledger under
// its own hash only when its hold is shredded, so the re-erasure drops it
// then and not before: held data neither comes back after its shred nor
// goes before it. But a copy taken before the real subject's erasure has
// the hold key without its schedule, which would make the data ordinary
// again (revealable for any purpose, never shredded): each kept hold key
// (not in drop) whose real subject the ledger names as erased since the
// key was made is scheduled from that erasure time and the keep of its
// class in classes, as the live vault did. A class classes does not name
// is refused (ErrHoldClassNotConfigured): the hold's end is unknown.
func restoreHolds(ledgerKey *aead.Key, classes map[string]vault.HoldClass, ledger map[string]vault.LedgerEntry, drop map[vault.KeyID]bool,
	keys func(yield func(string, vault.SubjectKey))) ([]subjectHold, error) {
	var holds []subjectHold
	var err error
	keys(func(pseudo string, sk vault.SubjectKey) {
		subject, class, ok := vault.SplitHoldSubject(pseudo)
		if !ok || drop[sk.ID] || err != nil {
			return
		}
		var h []byte
		if h, err = vault.LedgerHash(ledgerKey, subject); err != nil {
			return
		}
		e, erased := ledger[string(h)]
		if !erased || sk.Created.After(e.ErasedAt) {
			return // not erased: ordinary data until then
		}
		hc, ok := classes[class]
		if !ok {
			err = fmt.Errorf("%w: held data of an erased subject is under legal hold class %q: give the server's holds configuration, so that the hold keeps its end", ErrHoldClassNotConfigured, class)
			return
		}
		holds = append(holds, subjectHold{subject, e, vault.Hold{ID: sk.ID, Class: class, ErasedAt: e.ErasedAt, Until: hc.Until(e.ErasedAt)}})
	})
	return holds, err
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

// withPayload opens a backup file, decrypts it and hands use the
// payload's frames, checking that the payload's authenticated since and
// next match the file's header and that the ciphertext is the one whose
// digest was verified.
func withPayload(path string, ids []age.Identity, want verifiedFile, use func(Frames) error) (PayloadInfo, error) {
	var info PayloadInfo
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("backup file: %w", err)
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	if h.Since != want.h.Since || h.Next != want.h.Next || !bytes.Equal(h.Signature, want.h.Signature) {
		return info, fmt.Errorf("%s changed during the restore: it is no longer the file whose signature was verified", path)
	}
	sum := sha256.New()
	ct := io.TeeReader(f, sum)
	dec, err := age.Decrypt(ct, ids...)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return info, fmt.Errorf("%s: the age identity given cannot decrypt this backup (it was encrypted to other recipients)", path)
	case err != nil:
		return info, fmt.Errorf("%s: damaged: not a readable age encryption: %v", path, err)
	}
	read := false
	err = use(func(fn func([]byte) error) error {
		if read {
			return errors.New("backup: a payload's frames can be read once")
		}
		read = true
		info, err = ReadPayload(decryptReader{dec}, fn)
		return err
	})
	if err == nil && !read {
		err = fmt.Errorf("%w: the store did not read it", ErrBadPayload)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, ct) // hash to the end, whatever age left unread
	}
	if err == nil && !bytes.Equal(sum.Sum(nil), want.digest) {
		return info, fmt.Errorf("%s changed during the restore: it is no longer the file whose signature was verified", path)
	}
	var de decryptError
	if errors.As(err, &de) {
		// The age reader reports tampering and truncation as errors.
		return info, fmt.Errorf("%s is corrupted or truncated: %v", path, de.err)
	}
	if err != nil {
		// The payload's frame (ErrBadPayload) or the store's error.
		return info, fmt.Errorf("%s: %w", path, err)
	}
	if info.Since != h.Since || info.Next != h.Next {
		return info, fmt.Errorf("%s: the header (since %d, next %d) does not match the encrypted payload (since %d, next %d): the file was altered or not fully written", path, h.Since, h.Next, info.Since, info.Next)
	}
	return info, nil
}

// decryptReader marks the age reader's errors, so that they are reported
// as a damaged file whoever (the payload parser or a store) came upon
// them.
type decryptReader struct{ r io.Reader }

func (d decryptReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = decryptError{err}
	}
	return n, err
}

type decryptError struct{ err error }

func (e decryptError) Error() string { return e.err.Error() }
func (e decryptError) Unwrap() error { return e.err }

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
