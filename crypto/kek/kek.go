// Package kek defines the key-encryption-key (KEK) interface that wraps and
// unwraps per-subject data keys (DEKs), plus the optional capabilities a
// provider may offer.
//
// Providers live in sub-packages named after what they talk to:
// [github.com/tokenvault/tokenvault/crypto/kek/agekeyring] (a local,
// age-protected keyring file, the embedded default) and
// crypto/kek/hcvault (HashiCorp Vault transit).
//
// The interface is deliberately tiny and context-aware: a remote provider
// (HashiCorp Vault) must honour deadlines so that an outage turns into a
// prompt Unavailable error instead of a hung request.
//
// # Associated data
//
// Every wrap is bound to associated data (ad) that the caller chooses and
// must give again to unwrap: tokenvault binds a subject's wrapped DEK to the
// subject and the key id, so that a wrapped DEK copied under another subject
// (by someone who can write the store) does not unwrap there, and a rewrap
// of the store fails on it instead of carrying it into the next KEK epoch.
// The ad is authenticated, not encrypted, and a remote provider receives
// it: it must not contain personal data in the clear.
//
// Blobs written before binding existed ("unbound", [WrappedInfo.Bound]
// false) still unwrap, whatever ad is given: they were made without one.
// [Rotator.Rewrap] turns them into bound blobs. A bound blob cannot be
// passed off as an unbound one: the providers' formats make the two
// authenticate differently.
package kek

import (
	"context"
	"errors"
	"time"
)

// MaxADSize bounds the associated data of one wrap.
const MaxADSize = 1024

// Wrapper wraps and unwraps data keys. Wrapped blobs are opaque to callers
// and self-describing to the provider (they carry the KEK version used and
// whether they are bound to associated data), so a provider can unwrap
// blobs made under any version it still holds.
//
// Implementations must never include key material in errors.
type Wrapper interface {
	// Wrap encrypts dek under the current KEK version, bound to ad (1 to
	// MaxADSize bytes): Unwrap succeeds only with the same ad.
	Wrap(ctx context.Context, dek, ad []byte) ([]byte, error)
	// Unwrap decrypts a blob produced by Wrap with the same ad. The caller
	// owns (and must zero) the returned slice. A blob bound to other
	// associated data fails with ErrInvalidWrapped.
	Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error)
}

// RewrapItem is one wrapped DEK with the associated data it is bound to
// (or, for an unbound blob, is to be bound to).
type RewrapItem struct {
	Wrapped, AD []byte
}

// HealthChecker is an optional capability: providers that depend on a remote
// service report whether it is reachable and usable.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}

// Rotator is an optional capability behind KEK rotation epochs, the backup
// half of crypto-shredding: after Rotate, Rewrap of every stored wrapped DEK
// and Retire, a wrapped DEK copied into an older backup can no longer be
// unwrapped, so an erased subject is dead in every backup too.
type Rotator interface {
	// Rotate creates a new KEK version; later Wraps use it. It returns the
	// new version number.
	Rotate(ctx context.Context) (int, error)
	// Rewrap re-encrypts wrapped DEKs under the newest KEK version, bound
	// to their items' AD (which unbound blobs get now), without handing the
	// plaintext DEKs to the caller. Output order matches input. An item
	// bound to other associated data fails the call with ErrInvalidWrapped.
	Rewrap(ctx context.Context, items []RewrapItem) ([][]byte, error)
	// Retire destroys (or makes permanently unusable) every KEK version
	// below minVersion: blobs wrapped under them can never be unwrapped again.
	Retire(ctx context.Context, minVersion int) error
	// Versions lists the KEK versions the provider still holds.
	Versions(ctx context.Context) ([]Version, error)
	// Describe tells which KEK version a wrapped blob was made under and
	// whether it is bound to associated data, without unwrapping it.
	Describe(wrapped []byte) (WrappedInfo, error)
}

// WrappedInfo is what a wrapped blob's header says about it.
type WrappedInfo struct {
	// Version is the KEK version the blob was made under.
	Version int
	// Bound: the blob is bound to associated data. False for blobs made
	// before tokenvault bound wrapped keys; Rewrap binds them.
	Bound bool
}

// Version describes one KEK version.
type Version struct {
	Version int
	Created time.Time
}

// Sentinel errors that callers branch on. Providers wrap them with %w.
var (
	// ErrUnavailable: the provider could not be reached or timed out.
	// Retrying later may succeed.
	ErrUnavailable = errors.New("kek: provider unavailable")
	// ErrInvalidWrapped: the wrapped blob is malformed, was made by another
	// keyring, is bound to other associated data, or was made under a KEK
	// version that has been retired.
	ErrInvalidWrapped = errors.New("kek: wrapped key cannot be unwrapped")
)

// CheckAD is the check of associated data every provider makes before
// wrapping: ad must be present (a wrap bound to nothing would be as
// movable as an unbound one) and at most MaxADSize bytes.
func CheckAD(ad []byte) error {
	switch {
	case len(ad) == 0:
		return errors.New("kek: empty associated data")
	case len(ad) > MaxADSize:
		return errors.New("kek: associated data exceeds the size limit")
	}
	return nil
}
