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
package kek

import (
	"context"
	"errors"
	"time"
)

// Wrapper wraps and unwraps data keys. Wrapped blobs are opaque to callers
// and self-describing to the provider (they carry the KEK version used), so
// a provider can unwrap blobs made under any version it still holds.
//
// Implementations must never include key material in errors.
type Wrapper interface {
	// Wrap encrypts dek under the current KEK version.
	Wrap(ctx context.Context, dek []byte) ([]byte, error)
	// Unwrap decrypts a blob produced by Wrap. The caller owns (and
	// must zero) the returned slice.
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// BatchWrapper is an optional capability for providers that can wrap many
// keys in one round trip (HashiCorp Vault transit's batch_input).
type BatchWrapper interface {
	WrapBatch(ctx context.Context, deks [][]byte) ([][]byte, error)
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
	// Rewrap re-encrypts wrapped DEKs under the newest KEK version without
	// handing the plaintext DEKs to the caller. Output order matches input.
	Rewrap(ctx context.Context, wrapped [][]byte) ([][]byte, error)
	// Retire destroys (or makes permanently unusable) every KEK version
	// below minVersion: blobs wrapped under them can never be unwrapped again.
	Retire(ctx context.Context, minVersion int) error
	// Versions lists the KEK versions the provider still holds.
	Versions(ctx context.Context) ([]Version, error)
	// WrappedVersion tells which KEK version a wrapped blob was made under,
	// without unwrapping it.
	WrappedVersion(wrapped []byte) (int, error)
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
	// keyring, or was made under a KEK version that has been retired.
	ErrInvalidWrapped = errors.New("kek: wrapped key cannot be unwrapped")
)
