package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Legal holds at erasure.
//
// A hold class (config "holds") names a legal retention obligation, such
// as tax records: how long its data is kept after the subject's erasure,
// and for which purposes it may be revealed meanwhile. Tokenize and
// Encrypt put a value under a class ([Field.Hold], [EncryptItem.Hold]);
// such values are sealed not with the subject's data key but with a key
// of their own per subject and class: the subject key of the
// pseudo-subject [HoldSubject](subject, class). No store change is needed
// for it, the store hashes and seals that id like any other, and the
// real subject's erasure, export and KEK rotation find and cover it.
//
// Decisions (README, "Legal holds"):
//   - Until its subject is erased, held data is ordinary data: revealed
//     for any purpose the policy allows.
//   - EraseSubject shreds the subject's own key at once, as without holds,
//     and schedules each hold key, in the same transaction: the hold ends
//     at erasure time + the class's keep (the obligation runs from the end
//     of the relationship, and the end is then fixed by the erasure ledger
//     alone, which a restore also sees). Until then held data is revealed
//     only for the class's purposes (others: ErrHeld naming the purpose),
//     and from then on it is treated as erased even before the
//     maintenance loop shreds it (ShredDueHolds).
//   - Held data of an erased subject is frozen: Tokenize and Encrypt under
//     that class for the same subject id are refused until the hold ends
//     (new data would otherwise join data already scheduled for shredding
//     and die early with it).
//   - A hold key enters the erasure ledger only when it is shredded (its
//     own entry, for the pseudo-subject), so a restore keeps held data
//     until then and drops it after.
//   - One Tokenize call is one transaction under one key: its fields must
//     all be under the same hold class (or none).

// MaxHoldClassBytes bounds a hold class name.
const MaxHoldClassBytes = 32

// holdSep separates subject and class in a hold key's pseudo-subject.
// Subject ids refuse control characters (checkText), so no subject id,
// new or old, contains it: a pseudo-subject never names a real subject.
const holdSep = "\x00"

// HoldSubject is the pseudo-subject whose subject key keeps subject's
// data under hold class.
func HoldSubject(subject, class string) string { return subject + holdSep + class }

// SplitHoldSubject returns the real subject and class of a pseudo-subject
// made by HoldSubject; ok is false for a real subject id.
func SplitHoldSubject(s string) (subject, class string, ok bool) {
	return strings.Cut(s, holdSep)
}

// realSubject is s without its hold class, if it has one.
func realSubject(s string) string {
	subject, _, _ := SplitHoldSubject(s)
	return subject
}

// ErrHeld: the value is held after its subject's erasure, and the reveal's
// purpose is not one of its hold class's. A FailedPrecondition.
var ErrHeld = fmt.Errorf("%w: held after erasure for other purposes", ErrFailedPrecondition)

// HoldClass is one configured hold class.
type HoldClass struct {
	// Keep is how long the data is held after the subject's erasure, in
	// calendar years and days (7y: the same date seven years later).
	Years, Days int
	// Purposes are the only purposes the data is revealed for meanwhile.
	Purposes []string
}

// Until is when a hold of class c that began at erased ends.
func (c HoldClass) Until(erased time.Time) time.Time {
	return erased.AddDate(c.Years, 0, c.Days).UTC()
}

// ValidHoldClassName reports whether name may name a hold class: 1 to
// MaxHoldClassBytes of a-z, 0-9, '-' and '_'.
func ValidHoldClassName(name string) bool {
	if name == "" || len(name) > MaxHoldClassBytes {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func validateHolds(holds map[string]HoldClass) error {
	for name, c := range holds {
		switch {
		case !ValidHoldClassName(name):
			return fmt.Errorf("vault: hold class name %q: want 1 to %d of a-z, 0-9, - and _", name, MaxHoldClassBytes)
		case c.Years < 0 || c.Days < 0 || c.Years+c.Days == 0 || c.Years > 100 || c.Days > 36500:
			return fmt.Errorf("vault: hold class %q: keep out of range", name)
		case len(c.Purposes) == 0:
			return fmt.Errorf("vault: hold class %q: no purposes", name)
		}
	}
	return nil
}

// checkHold validates the hold class of a new value (field names the
// request field); "" is no hold.
func (v *Vault) checkHold(field, class string) error {
	if class == "" {
		return nil
	}
	if _, ok := v.holds[class]; !ok {
		return invalid(field, "unknown hold class (not in the server's holds configuration)")
	}
	return nil
}

// holdKeySubject is the subject whose key stores new data under class:
// subject itself without a class, its pseudo-subject with one. It refuses
// (ErrFailedPrecondition) a class whose data of this subject is held after
// the subject's erasure (see the top of this file).
func (v *Vault) holdKeySubject(ctx context.Context, field, subject, class string) (string, error) {
	if class == "" {
		return subject, nil
	}
	hs, err := capability[HoldStore](v, "legal holds")
	if err != nil {
		return "", err
	}
	ks := HoldSubject(subject, class)
	sk, err := v.store.SubjectKey(ctx, ks)
	if errors.Is(err, ErrNotFound) {
		return ks, nil
	}
	if err != nil {
		return "", err
	}
	switch _, err := hs.HoldOf(ctx, sk.ID); {
	case errors.Is(err, ErrNotFound):
		return ks, nil
	case err != nil:
		return "", err
	}
	return "", &FieldError{Field: field, Err: ErrFailedPrecondition,
		Reason: "the subject was erased and its data under this hold class is held until the hold ends: no new data is added to it"}
}

// tokenizeHold is the one hold class of a Tokenize call's fields.
func tokenizeHold(fields []Field) (string, error) {
	for i, f := range fields {
		if f.Hold != fields[0].Hold {
			return "", invalid(item("fields", i)+".options.hold",
				"every field of one call must be under the same hold class (or none): a call is stored in one transaction under one key")
		}
	}
	return fields[0].Hold, nil
}

// checkHeld refuses to reveal a value under a hold key whose subject was
// erased: ErrErased once the hold has ended, ErrHeld for a purpose not
// of its class. purpose is "" for masks, which show no value (as under a
// restriction). Data of a subject not erased passes.
func (v *Vault) checkHeld(ctx context.Context, c cached, field, purpose string) error {
	if _, _, ok := SplitHoldSubject(c.subject); !ok {
		return nil
	}
	hs, ok := v.store.(HoldStore)
	if !ok {
		return nil
	}
	h, err := hs.HoldOf(ctx, c.id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case !v.now().Before(h.Until):
		// Over, even if the maintenance loop has not shredded it yet.
		return ErrErased
	case purpose == "":
		return nil
	}
	p, _ := Purpose(purpose)
	if slices.Contains(v.holds[h.Class].Purposes, p) {
		return nil
	}
	return &FieldError{Field: "purpose", Err: ErrHeld, Reason: fmt.Sprintf(
		"purpose %q is not one of hold class %q's (%s): the value's subject was erased and it is kept until %s only for those",
		p, h.Class, strings.Join(v.holds[h.Class].Purposes, ", "), h.Until.Format(time.RFC3339))}
}

// holdsToSchedule lists the hold keys of subject that an erasure at at
// schedules: every hold class with a key for the subject not already
// scheduled by an earlier erasure.
func (v *Vault) holdsToSchedule(ctx context.Context, subject string, at time.Time) ([]Hold, error) {
	hs, ok := v.store.(HoldStore)
	if len(v.holds) == 0 || !ok {
		// A store without holds holds no held data (Tokenize and Encrypt
		// refuse a hold there), and an erasure must always work.
		return nil, nil
	}
	var holds []Hold
	for _, name := range v.holdNames() {
		sk, err := v.store.SubjectKey(ctx, HoldSubject(subject, name))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch _, err := hs.HoldOf(ctx, sk.ID); {
		case err == nil: // held since an earlier erasure
			continue
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
		holds = append(holds, Hold{ID: sk.ID, Class: name, ErasedAt: at, Until: v.holds[name].Until(at)})
	}
	return holds, nil
}

// shredHolding is the shred of a store without erasure events: with the
// holds' schedule when the store keeps holds.
func (v *Vault) shredHolding(ctx context.Context, subject string, entry LedgerEntry, holds []Hold) (KeyID, error) {
	if hs, ok := v.store.(HoldStore); ok && len(v.holds) > 0 {
		return hs.ShredSubjectHolding(ctx, subject, entry, holds)
	}
	return v.store.ShredSubject(ctx, subject, entry)
}

// heldOf is what the receipt says of holds.
func heldOf(holds []Hold) []receipt.Held {
	if len(holds) == 0 {
		return nil
	}
	held := make([]receipt.Held, len(holds))
	for i, h := range holds {
		held[i] = receipt.Held{Class: h.Class, Until: h.Until}
	}
	return held
}

func (v *Vault) holdNames() []string {
	names := make([]string, 0, len(v.holds))
	for name := range v.holds {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// restrictHolds sets (since) or lifts (zero) the restriction of
// subject's hold keys, so that restricting a subject covers its held data,
// and returns how many it found.
func (v *Vault) restrictHolds(ctx context.Context, rs RightsStore, subject string, since time.Time) (int, error) {
	n := 0
	for _, name := range v.holdNames() {
		ks := HoldSubject(subject, name)
		err := rs.SetRestricted(ctx, ks, since)
		v.cache.invalidate(ks, KeyID{}) // even on error: it may have committed
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return n, err
		}
		n++
	}
	return n, nil
}

// duePage bounds one DueHolds read.
const duePage = 100

// ShredDueHolds crypto-shreds every hold that has ended and returns how
// many; the server's maintenance loop runs it. Each shred is durable with
// its ledger entry and its signed receipt in one transaction before the
// hold's records are purged: a crash before the shred leaves the schedule
// (the next run shreds it), one after it leaves a pending purge (resumed
// at start, as after an erasure).
func (v *Vault) ShredDueHolds(ctx context.Context) (int, error) {
	hs, ok := v.store.(HoldStore)
	if !ok {
		return 0, nil
	}
	n := 0
	for {
		now := v.now().UTC()
		due, err := hs.DueHolds(ctx, now, duePage)
		if err != nil {
			return n, err
		}
		for _, h := range due {
			if err := v.shredHold(ctx, hs, h, now); err != nil {
				return n, err
			}
			n++
		}
		if len(due) < duePage {
			return n, nil
		}
	}
}

func (v *Vault) shredHold(ctx context.Context, hs HoldStore, h Hold, now time.Time) error {
	pseudo, _, err := v.store.SubjectKeyByID(ctx, h.ID)
	if errors.Is(err, ErrNotFound) {
		// No key left to shred (nor a subject to name): drop the schedule.
		return hs.ShredHold(ctx, h.ID, LedgerEntry{}, "", nil)
	}
	if err != nil {
		return fmt.Errorf("reading a due hold's key: %w", err)
	}
	subject, class, ok := SplitHoldSubject(pseudo)
	if !ok {
		return fmt.Errorf("%w: a hold is scheduled for a subject's own key", ErrCorrupt)
	}
	// The receipt is made before the shred and stored with it: counting
	// the records first is exact, since held data of an erased subject is
	// frozen (holdKeySubject).
	c, err := v.countKey(ctx, h.ID)
	if err != nil {
		return err
	}
	entry, err := v.ledgerEntry(pseudo, now)
	if err != nil {
		return err
	}
	r := receipt.Receipt{Subject: subject, ErasedAt: now, Records: c.Records, Lookups: c.Lookups,
		HoldClass: class, SubjectErasedAt: h.ErasedAt}
	r, _ = v.sign(r)
	// Stored without the subject id (no id at rest in the clear); the
	// vault puts it back when the receipt is fetched (HoldReceipts).
	stored := r
	stored.Subject = ""
	err = hs.ShredHold(ctx, h.ID, entry, subject, stored.Marshal())
	v.cache.invalidate(pseudo, h.ID) // even on error: it may have committed
	if errors.Is(err, ErrNotFound) {
		return nil // shredded meanwhile
	}
	if err != nil {
		return fmt.Errorf("shredding a held key: %w", err)
	}
	v.erasures.Add(1)
	pc, err := v.store.PurgeKey(context.WithoutCancel(ctx), h.ID)
	v.recordsPurged.Add(pc.Records)
	v.tokens.Add(-pc.Records)
	if err != nil {
		return fmt.Errorf("held key destroyed, but purging its records failed (resumed at next start): %w", err)
	}
	v.log.Info("shredded held data at the end of its hold", "class", class, "records", pc.Records)
	return nil
}

// countKey counts the records and lookups made under key id.
func (v *Vault) countKey(ctx context.Context, id KeyID) (PurgeCounts, error) {
	var c PurgeCounts
	rs, ok := v.store.(RightsStore)
	if !ok {
		return c, nil
	}
	after := ""
	for {
		page, err := rs.KeyRecords(ctx, id, after, scanPage)
		if err != nil {
			return c, err
		}
		for _, r := range page {
			c.Records++
			if r.Lookup != nil {
				c.Lookups++
			}
		}
		if len(page) < scanPage {
			return c, nil
		}
		after = page[len(page)-1].Cursor
	}
}

// HoldReceipts returns the signed receipts of subject's hold shreds (the
// second receipts of an erasure with holds), in the order they were made.
func (v *Vault) HoldReceipts(ctx context.Context, subject string) ([]receipt.Receipt, [][]byte, error) {
	if err := checkID("subject_id", subject); err != nil {
		return nil, nil, err
	}
	hs, err := capability[HoldStore](v, "legal holds")
	if err != nil {
		return nil, nil, err
	}
	stored, err := hs.HoldReceipts(ctx, subject)
	if err != nil {
		return nil, nil, err
	}
	rs := make([]receipt.Receipt, 0, len(stored))
	files := make([][]byte, 0, len(stored))
	for _, b := range stored {
		r, err := receipt.ParseWithout(b, subject)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: stored hold receipt: %w", ErrCorrupt, err)
		}
		rs = append(rs, r)
		if r.Signature != nil {
			files = append(files, r.Marshal())
		} else {
			files = append(files, nil)
		}
	}
	return rs, files, nil
}

// ExportedHold is one hold key of an exported subject.
type ExportedHold struct {
	Class      string
	KeyID      KeyID // blobs encrypted under the hold carry this key id
	KeyCreated time.Time
	// ErasedAt and Until are set once the subject was erased: the data is
	// then kept until Until, for the class's purposes only.
	ErasedAt, Until time.Time
}

// subjectHolds lists subject's hold keys that are not over, for export:
// as the header shows them, and their keys.
func (v *Vault) subjectHolds(ctx context.Context, subject string) ([]ExportedHold, []SubjectKey, error) {
	hs, ok := v.store.(HoldStore)
	if len(v.holds) == 0 || !ok {
		return nil, nil, nil // no held data without holds (see shredWithHolds)
	}
	var out []ExportedHold
	var keys []SubjectKey
	for _, name := range v.holdNames() {
		sk, err := v.store.SubjectKey(ctx, HoldSubject(subject, name))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		eh := ExportedHold{Class: name, KeyID: sk.ID, KeyCreated: sk.Created}
		h, err := hs.HoldOf(ctx, sk.ID)
		switch {
		case err == nil:
			eh.ErasedAt, eh.Until = h.ErasedAt, h.Until
		case !errors.Is(err, ErrNotFound):
			return nil, nil, err
		}
		if !eh.Until.IsZero() && !v.now().Before(eh.Until) {
			continue // over: erased, awaiting the shred
		}
		out = append(out, eh)
		keys = append(keys, sk)
	}
	return out, keys, nil
}
