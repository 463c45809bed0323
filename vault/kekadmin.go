package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// KEK rotation epochs: the backup half of crypto-shredding.
//
// A backup holds subject keys wrapped under the KEK version that was current
// when it was taken. Erasing a subject deletes its key from the live store,
// but not from those backups. Rotating the KEK, rewrapping every stored key
// under the new version and then retiring the old version (destroying it)
// makes every older backup's wrapped keys useless: an erased subject is
// then unrecoverable from every backup.
//
// Retiring too early would also kill the backups you still need for
// disaster recovery, so a version is retired only once the version that
// replaced it has been current for longer than the backup retention: every
// backup still kept was taken after the rewrap. With rotation every R and
// retention B, an erased subject is dead in every backup at most R + B
// after its erasure.
//
// Hold keys (holds.go) are subject keys like any other: rewrapped and
// retired with them. Data under a hold lives on after the erasure, so its
// bound runs from the hold's shred instead: dead in every backup at most
// R + B after the shred, which the hold's own receipt states
// (backups_undecryptable_by); the erasure's receipt states the bound of
// what it erased at once.

// ErrNoRotation: the KEK provider cannot rotate.
var ErrNoRotation = errors.New("the key-encryption key provider does not support rotation")

// KEKStatus describes the KEK versions and which of them stored keys use.
type KEKStatus struct {
	Versions []kek.Version
	Current  int
	// KeysByVersion counts stored subject keys per KEK version.
	KeysByVersion map[int]int
	// Unbound counts stored subject keys wrapped before wraps were bound
	// to their subject (see KeyBinding); RewrapKeys binds them.
	Unbound int
}

func (v *Vault) rotator() (kek.Rotator, error) {
	r, ok := v.kek.(kek.Rotator)
	if !ok {
		return nil, &FieldError{Field: "kek", Reason: ErrNoRotation.Error(), Err: ErrFailedPrecondition}
	}
	return r, nil
}

// KEKStatus scans the store.
func (v *Vault) KEKStatus(ctx context.Context) (KEKStatus, error) {
	r, err := v.rotator()
	if err != nil {
		return KEKStatus{}, err
	}
	ks, err := v.keyScan()
	if err != nil {
		return KEKStatus{}, err
	}
	st := KEKStatus{KeysByVersion: map[int]int{}}
	if st.Versions, err = r.Versions(ctx); err != nil {
		return st, fmt.Errorf("listing KEK versions: %w", err)
	}
	st.Current = newest(st.Versions)
	err = scanKeys(ctx, ks, func(page []SubjectEntry) error {
		for _, e := range page {
			info, err := describe(r, e)
			if err != nil {
				return err
			}
			st.KeysByVersion[info.Version]++
			if !info.Bound {
				st.Unbound++
			}
		}
		return nil
	})
	return st, err
}

func describe(r kek.Rotator, e SubjectEntry) (kek.WrappedInfo, error) {
	info, err := r.Describe(e.Key.Wrapped)
	if err != nil {
		return info, fmt.Errorf("%w: wrapped key of a subject: %w", ErrCorrupt, err)
	}
	return info, nil
}

func newest(vers []kek.Version) int {
	n := 0
	for _, v := range vers {
		n = max(n, v.Version)
	}
	return n
}

// scanPage bounds one page of a key scan (and one rewrap batch).
const scanPage = 200

// keyScan is the store capability every KEK administration needs.
func (v *Vault) keyScan() (KeyScanStore, error) {
	return capability[KeyScanStore](v, "scanning subject keys (KEK status, rewrap and retirement)")
}

func scanKeys(ctx context.Context, ks KeyScanStore, fn func([]SubjectEntry) error) error {
	return scanPages(ctx, ks.SubjectKeys, func(e SubjectEntry) string { return e.Subject }, fn)
}

// scanPages walks a store listing page by page: fetch returns up to n items
// after the cursor, cursor gives an item's cursor, fn sees each page.
func scanPages[T, C any](ctx context.Context, fetch func(context.Context, C, int) ([]T, error), cursor func(T) C, fn func([]T) error) error {
	var after C
	for {
		page, err := fetch(ctx, after, scanPage)
		if err != nil || len(page) == 0 {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		after = cursor(page[len(page)-1])
	}
}

// RotateKEK makes a new KEK version current; new subject keys are wrapped
// under it. Follow it with RewrapKeys.
func (v *Vault) RotateKEK(ctx context.Context) (int, error) {
	r, err := v.rotator()
	if err != nil {
		return 0, err
	}
	n, err := r.Rotate(ctx)
	if err != nil {
		return 0, fmt.Errorf("rotating the KEK: %w", err)
	}
	v.log.Info("KEK rotated", "version", n)
	return n, nil
}

// RewrapProgress reports a rewrap.
type RewrapProgress struct {
	Scanned   int // subject keys looked at
	Rewrapped int // subject keys moved to the current KEK version (and bound)
}

// RewrapKeys rewraps every stored subject key that is not under the current
// KEK version, or not yet bound to its subject (wrapped before wraps were
// bound, see KeyBinding): after it, every stored key is bound. It is
// resumable: interrupted, it can simply run again, and keys already
// rewrapped are skipped. progress (may be nil) is called after every page.
//
// A key bound to another subject than the one it is stored under (copied
// there in the store) fails the rewrap with an error wrapping
// kek.ErrInvalidWrapped: it is not carried into the new KEK epoch.
//
// Binding a key that was unbound trusts the store's word for its subject:
// a copy made under a decoy subject before binding existed becomes bound to
// the decoy. What closes that door is retiring the KEK versions unbound
// keys were made under (rotate, rewrap, retire), after which no unbound
// wrapped key unwraps anywhere.
func (v *Vault) RewrapKeys(ctx context.Context, progress func(RewrapProgress)) (RewrapProgress, error) {
	var p RewrapProgress
	r, err := v.rotator()
	if err != nil {
		return p, err
	}
	ks, err := v.keyScan()
	if err != nil {
		return p, err
	}
	vers, err := r.Versions(ctx)
	if err != nil {
		return p, fmt.Errorf("listing KEK versions: %w", err)
	}
	current := newest(vers)
	err = scanKeys(ctx, ks, func(page []SubjectEntry) error {
		var stale []SubjectEntry
		var items []kek.RewrapItem
		for _, e := range page {
			info, err := describe(r, e)
			if err != nil {
				return err
			}
			if info.Version < current || !info.Bound {
				stale = append(stale, e)
				items = append(items, kek.RewrapItem{Wrapped: e.Key.Wrapped, AD: KeyBinding(e.Key.ID, e.Subject)})
			}
		}
		p.Scanned += len(page)
		if len(stale) > 0 {
			fresh, err := r.Rewrap(ctx, items)
			if err != nil {
				return fmt.Errorf("rewrapping subject keys: %w", err)
			}
			for i, e := range stale {
				err := ks.ReplaceWrapped(ctx, e.Subject, e.Key.ID, fresh[i])
				if errors.Is(err, ErrErased) {
					continue // erased meanwhile: nothing to rewrap
				}
				if err != nil {
					return fmt.Errorf("storing a rewrapped key: %w", err)
				}
				p.Rewrapped++
			}
		}
		if progress != nil {
			progress(p)
		}
		return nil
	})
	return p, err
}

// RetireResult says what RetireKEK did.
type RetireResult struct {
	// MinVersion is the oldest KEK version still held afterwards.
	MinVersion int
	// Retired lists the versions destroyed by this call.
	Retired []int
}

// RetireKEK destroys every KEK version whose successor has been current for
// longer than retention (see the comment at the top of this file). It
// refuses while any stored subject key is still wrapped under a version it
// would destroy: that would lose live data, so run RewrapKeys first.
func (v *Vault) RetireKEK(ctx context.Context, retention time.Duration) (RetireResult, error) {
	var res RetireResult
	r, err := v.rotator()
	if err != nil {
		return res, err
	}
	ks, err := v.keyScan()
	if err != nil {
		return res, err
	}
	vers, err := r.Versions(ctx)
	if err != nil {
		return res, fmt.Errorf("listing KEK versions: %w", err)
	}
	slices.SortFunc(vers, func(a, b kek.Version) int { return a.Version - b.Version })
	if len(vers) == 0 {
		return res, fmt.Errorf("%w: the KEK provider lists no versions", ErrCorrupt)
	}
	res.MinVersion = vers[0].Version
	now := v.now()
	for i := 0; i+1 < len(vers); i++ {
		if now.Sub(vers[i+1].Created) < retention {
			break
		}
		res.MinVersion = vers[i+1].Version
		res.Retired = append(res.Retired, vers[i].Version)
	}
	if len(res.Retired) == 0 {
		return res, nil
	}
	stale := 0
	err = scanKeys(ctx, ks, func(page []SubjectEntry) error {
		for _, e := range page {
			info, err := describe(r, e)
			if err != nil {
				return err
			}
			if info.Version < res.MinVersion {
				stale++
			}
		}
		return nil
	})
	if err != nil {
		return RetireResult{}, err
	}
	if stale > 0 {
		return RetireResult{}, &FieldError{Field: "kek", Err: ErrFailedPrecondition,
			Reason: fmt.Sprintf("%d subject keys are still wrapped under KEK versions below %d; run the rewrap (tokenvault kek rewrap) first", stale, res.MinVersion)}
	}
	if err := r.Retire(ctx, res.MinVersion); err != nil {
		return RetireResult{}, fmt.Errorf("retiring KEK versions: %w", err)
	}
	v.log.Info("KEK versions retired", "min_version", res.MinVersion, "retired", res.Retired)
	return res, nil
}
