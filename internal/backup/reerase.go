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
//
// Legal holds follow Restore's rule too (restoreHolds): a copy taken
// before an erasure has the subject's hold keys without their schedule,
// and an unscheduled hold key is ordinary data (revealable for any
// purpose, never shredded). Each hold key of a re-erased subject is
// scheduled from the ledger's erasure time and its class's keep, in the
// shred's own transaction (vault.HoldStore.ShredSubjectHolding), as the
// live erasure did; without the class in the holds given, ReErase
// refuses before changing anything.

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
	Held     int   // hold keys of re-erased subjects scheduled
}

// reErasePage bounds one page of the key scan.
const reErasePage = 500

// ReErase applies ledger (verified with key; source names it in errors)
// to s, scheduling the holds of erased subjects with the hold classes
// holds (the server's config "holds"). Unauthenticated (legacy) ledgers
// are refused: nothing would prove that no entry was removed.
func ReErase(ctx context.Context, s ReEraseStore, key *aead.Key, ledger Ledger, source string, holds map[string]vault.HoldClass) (ReEraseResult, error) {
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
		entry vault.LedgerEntry
		own   bool         // its own key is shredded
		holds []vault.Hold // its hold keys to schedule
	}
	victims := map[string]*victim{}
	var order []string // subjects in scan order, for a stable run
	victimOf := func(subject string, e vault.LedgerEntry) *victim {
		v, ok := victims[subject]
		if !ok {
			v = &victim{entry: e}
			victims[subject] = v
			order = append(order, subject)
		}
		return v
	}
	var keys []vault.SubjectEntry
	drop := map[vault.KeyID]bool{}
	present := map[string]bool{} // subjects the ledger names with a key here
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
			// A hold key in the ledger under its own hash was shredded
			// with its hold: it goes like any erased subject.
			le, named := byHash[string(h)]
			if named {
				present[e.Subject] = true
			}
			if named && !e.Key.Created.After(le.ErasedAt) {
				victimOf(e.Subject, le).own = true
				drop[e.Key.ID] = true
			}
			if _, _, ok := vault.SplitHoldSubject(e.Subject); ok {
				keys = append(keys, e)
			}
		}
		after = page[len(page)-1].Subject
	}
	// Only hold keys without a schedule need one (and their class): a
	// copy taken after the erasure has the schedules already.
	hs, _ := s.(vault.HoldStore)
	unscheduled := keys[:0]
	for _, e := range keys {
		if hs != nil && !drop[e.Key.ID] {
			switch _, err := hs.HoldOf(ctx, e.Key.ID); {
			case err == nil:
				continue
			case !errors.Is(err, vault.ErrNotFound):
				return res, fmt.Errorf("reading a hold's schedule: %w", err)
			}
		}
		unscheduled = append(unscheduled, e)
	}
	held, err := restoreHolds(key, holds, byHash, drop, func(yield func(string, vault.SubjectKey)) {
		for _, e := range unscheduled {
			yield(e.Subject, e.Key)
		}
	})
	if err != nil {
		return res, err
	}
	if len(held) > 0 && hs == nil {
		return res, errors.New("the store holds data under legal hold of erased subjects, but cannot schedule holds")
	}
	for _, h := range held {
		// A copy taken after the erasure has the schedule already (and
		// ShredSubjectHolding would skip it): only unscheduled holds.
		switch _, err := hs.HoldOf(ctx, h.hold.ID); {
		case err == nil:
			continue
		case !errors.Is(err, vault.ErrNotFound):
			return res, fmt.Errorf("reading a hold's schedule: %w", err)
		}
		v := victimOf(h.subject, h.entry)
		v.holds = append(v.holds, h.hold)
	}
	for _, subject := range order {
		if v := victims[subject]; len(v.holds) > 0 && present[subject] && !v.own {
			// The subject has a key made after the erasure: shredding it
			// with the holds would erase data it never lost. Refused
			// before anything changes.
			return res, errors.New("a re-erased subject's hold keys are unscheduled, but the subject has a key made after its erasure: the copy does not match the ledger")
		}
	}
	for _, subject := range order {
		v := victims[subject]
		var id vault.KeyID
		var err error
		if len(v.holds) > 0 {
			id, err = hs.ShredSubjectHolding(ctx, subject, v.entry, v.holds)
		} else {
			id, err = s.ShredSubject(ctx, subject, v.entry)
		}
		if errors.Is(err, vault.ErrNotFound) {
			continue // erased meanwhile
		}
		if err != nil {
			return res, fmt.Errorf("re-erasing a subject: %w", err)
		}
		res.Held += len(v.holds)
		if id == (vault.KeyID{}) {
			continue // only its holds were scheduled: no key of its own
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
