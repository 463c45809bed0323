package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Re-erasing a store in place.
//
// A store brought back by the database's own tools (pg_restore of a
// pg_dump, a PITR or snapshot restore) holds what was there when the copy
// was taken, subjects erased since included. ReErase applies the live
// vault's erasure ledger to it, with the rule Restore applies to backups:
// a subject the ledger names with an erasure time not before its key was
// created is shredded again (key row deleted, its records purged) and the
// ledger entries are added to the store's ledger. It runs on the restored
// store before any server serves it (README "Database-level restores").

// ReEraseStore is what ReErase needs of a store.
type ReEraseStore interface {
	vault.Store
	vault.KeyScanStore
	vault.LedgerStore
}

// ReEraseResult says what ReErase did.
type ReEraseResult struct {
	ReErased int   // subjects shredded again
	Purged   int64 // their records purged
	Resumed  int   // purges interrupted before the copy was taken, finished
	Ledger   int   // ledger entries applied
}

// reErasePage bounds one page of the key scan.
const reErasePage = 500

// ReErase applies ledger (verified with key; source names it in errors)
// to s. Unauthenticated (legacy) ledgers are refused: nothing would prove
// that no entry was removed.
func ReErase(ctx context.Context, s ReEraseStore, key *aead.Key, ledger Ledger, source string) (ReEraseResult, error) {
	var res ReEraseResult
	if key == nil {
		return res, errors.New("no ledger key given")
	}
	kid, err := vault.LedgerKeyID(key)
	if err != nil {
		return res, err
	}
	if ledger.KeyID != kid {
		return res, fmt.Errorf("%s was made with ledger key %s, but the ledger key given is %s: it would match no subject; use the ledger key of the vault the ledger comes from", source, ledger.KeyID, kid)
	}
	if err := ledger.Verify(key); err != nil {
		return res, fmt.Errorf("%s: %w", source, err)
	}
	byHash := map[string]vault.LedgerEntry{}
	for _, e := range ledger.Entries {
		if old, ok := byHash[string(e.Hash)]; !ok || e.ErasedAt.After(old.ErasedAt) {
			byHash[string(e.Hash)] = e
		}
	}
	// Collect first, shred after: shredding while paging would move the
	// pages under the scan.
	type victim struct {
		subject string
		entry   vault.LedgerEntry
	}
	var victims []victim
	after := ""
	for {
		page, err := s.SubjectKeys(ctx, after, reErasePage)
		if err != nil {
			return res, fmt.Errorf("listing subject keys: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			h, err := vault.LedgerHash(key, e.Subject)
			if err != nil {
				return res, err
			}
			if le, ok := byHash[string(h)]; ok && !e.Key.Created.After(le.ErasedAt) {
				victims = append(victims, victim{e.Subject, le})
			}
		}
		after = page[len(page)-1].Subject
	}
	for _, v := range victims {
		id, err := s.ShredSubject(ctx, v.subject, v.entry)
		if errors.Is(err, vault.ErrNotFound) {
			continue // erased meanwhile
		}
		if err != nil {
			return res, fmt.Errorf("re-erasing a subject: %w", err)
		}
		c, err := s.PurgeKey(ctx, id)
		if err != nil {
			return res, fmt.Errorf("purging a re-erased subject's records: %w", err)
		}
		res.ReErased++
		res.Purged += c.Records
	}
	// Erasures whose purge had not finished when the copy was taken.
	pending, err := s.PendingPurges(ctx)
	if err != nil {
		return res, fmt.Errorf("listing interrupted erasures: %w", err)
	}
	for _, id := range pending {
		if _, err := s.PurgeKey(ctx, id); err != nil {
			return res, fmt.Errorf("resuming an interrupted erasure: %w", err)
		}
		res.Resumed++
	}
	entries := make([]vault.LedgerEntry, 0, len(byHash))
	for _, e := range byHash {
		entries = append(entries, e)
	}
	if err := s.PutLedgerEntries(ctx, entries); err != nil {
		return res, fmt.Errorf("adding the ledger to the store's: %w", err)
	}
	res.Ledger = len(entries)
	return res, nil
}
