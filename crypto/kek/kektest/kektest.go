// Package kektest is the conformance suite every [kek.Wrapper] provider runs,
// so that the local keyring and HashiCorp Vault transit behave the same way
// for the code above them. It has one group of tests per capability:
//
//   - [RunWrapper]: [kek.Wrapper], which every provider implements;
//   - [RunRotator]: [kek.Rotator];
//   - [RunUnbound]: the blobs a provider wrote before wraps were bound to
//     associated data.
//
// [Run] runs every group that applies. A provider's test calls it with a
// constructor, and with a function that makes the unbound blobs the
// provider wrote before wraps were bound (nil for a provider that never
// wrote any):
//
//	func TestConformance(t *testing.T) {
//		kektest.Run(t, func(t *testing.T) kek.Wrapper {
//			return newProviderWithAFreshKeyring(t)
//		}, wrapTheOldWay)
//	}
//
// Optional capabilities are detected by type assertion, as callers do, and
// the groups of those a provider lacks are skipped, visibly.
package kektest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// dekSize is the DEK length tokenvault uses (AES-256 / XChaCha20 keys).
const dekSize = 32

// callTimeout bounds every call the suite makes, so a provider that ignores
// its context fails the test instead of hanging it. It is generous on
// purpose: the suite asserts behaviour, not speed.
const callTimeout = 2 * time.Minute

// NewWrapper returns a wrapper over a fresh keyring of its own on every
// call: tests rotate and retire KEK versions, and one test checks that a
// blob from another keyring is rejected. It may register cleanups on the t
// it is given.
type NewWrapper func(t *testing.T) kek.Wrapper

// WrapUnbound wraps dek under w's current KEK version exactly as the
// provider did before wraps were bound (its legacy format).
type WrapUnbound func(t *testing.T, w kek.Wrapper, dek []byte) []byte

// Run runs every group that applies to the provider: RunWrapper always,
// RunRotator if its wrappers implement kek.Rotator, RunUnbound if
// wrapUnbound is not nil.
func Run(t *testing.T, newWrapper NewWrapper, wrapUnbound WrapUnbound) {
	t.Run("Wrapper", func(t *testing.T) { RunWrapper(t, newWrapper) })
	_, rotates := newWrapper(t).(kek.Rotator)
	t.Run("Rotator", func(t *testing.T) {
		if !rotates {
			t.Skip("the provider does not implement kek.Rotator")
		}
		RunRotator(t, newWrapper)
	})
	t.Run("Unbound", func(t *testing.T) {
		if wrapUnbound == nil {
			t.Skip("the provider never wrote unbound blobs")
		}
		RunUnbound(t, newWrapper, wrapUnbound)
	})
}

// test is one named test of a group.
type test struct {
	name string
	fn   func(*testing.T, NewWrapper)
}

func runTests(t *testing.T, newWrapper NewWrapper, tests []test) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newWrapper) })
	}
}

// RunWrapper checks [kek.Wrapper]: round trips, binding to associated
// data, randomized wraps, rejection of invalid blobs, contexts.
func RunWrapper(t *testing.T, newWrapper NewWrapper) {
	runTests(t, newWrapper, []test{
		{"RoundTrip", testRoundTrip},
		{"BoundToAssociatedData", testBoundToAssociatedData},
		{"AssociatedDataRequired", testAssociatedDataRequired},
		{"WrapIsRandomized", testWrapIsRandomized},
		{"UnwrapRejectsInvalid", testUnwrapRejectsInvalid},
		{"CanceledContext", testCanceledContext},
	})
}

// RunRotator checks [kek.Rotator]: Describe, Rotate, Rewrap and Retire.
func RunRotator(t *testing.T, newWrapper NewWrapper) {
	runTests(t, newWrapper, []test{
		{"NewWrapsAreBound", testNewWrapsAreBound},
		{"RewrapRequiresAssociatedData", testRewrapRequiresAssociatedData},
		{"Rotation", testRotation},
		{"DescribeRejectsGarbage", testDescribeRejectsGarbage},
	})
}

// RunUnbound checks the provider's unbound blobs: they still unwrap and,
// if the provider implements kek.Rotator, Describe tells them apart and
// Rewrap binds them.
func RunUnbound(t *testing.T, newWrapper NewWrapper, wrapUnbound WrapUnbound) {
	t.Run("Unwraps", func(t *testing.T) { testUnboundUnwraps(t, newWrapper, wrapUnbound) })
	t.Run("RewrapBinds", func(t *testing.T) {
		if _, ok := newWrapper(t).(kek.Rotator); !ok {
			t.Skip("the provider does not implement kek.Rotator")
		}
		testRewrapBindsUnbound(t, newWrapper, wrapUnbound)
	})
}

// rotator returns w as a kek.Rotator, failing the test if it is not one
// (a Rotator test was run for a provider without the capability).
func rotator(t *testing.T, w kek.Wrapper) kek.Rotator {
	t.Helper()
	r, ok := w.(kek.Rotator)
	if !ok {
		t.Fatalf("provider %T does not implement kek.Rotator", w)
	}
	return r
}

func testRoundTrip(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	ctx := testContext(t)
	deks := [][]byte{make([]byte, dekSize), bytes.Repeat([]byte{0xff}, dekSize)}
	for range 8 {
		deks = append(deks, randomDEK(t))
	}
	ads := [][]byte{adA, {0}, bytes.Repeat([]byte{0xa5}, kek.MaxADSize)}
	for i, dek := range deks {
		ad := ads[i%len(ads)]
		wrapped, err := w.Wrap(ctx, dek, ad)
		if err != nil {
			t.Fatalf("Wrap(dek %d): %v", i, err)
		}
		checkNoLeak(t, "wrapped blob", wrapped, dek)
		got, err := w.Unwrap(ctx, wrapped, ad)
		if err != nil {
			t.Fatalf("Unwrap(dek %d): %v", i, err)
		}
		if !bytes.Equal(got, dek) {
			t.Fatalf("Unwrap(Wrap(dek %d)) returned a different key", i)
		}
	}
}

func testBoundToAssociatedData(t *testing.T, newWrapper NewWrapper) {
	// A wrapped DEK copied to where other associated data is expected
	// (tokenvault: under another subject) must not unwrap there.
	w := newWrapper(t)
	ctx := testContext(t)
	dek := randomDEK(t)
	wrapped := mustWrap(ctx, t, w, dek)
	others := map[string][]byte{
		"other":       adB,
		"prefix":      adA[:len(adA)-1],
		"extended":    append(slices.Clone(adA), 0),
		"one bit off": flipBit(adA, len(adA)/2),
	}
	for name, ad := range others {
		t.Run(name, func(t *testing.T) { mustRefuse(ctx, t, w, wrapped, ad, dek) })
	}
	if got := mustUnwrap(ctx, t, w, wrapped); !bytes.Equal(got, dek) {
		t.Fatal("Unwrap with the right associated data returned a different key")
	}
}

func testAssociatedDataRequired(t *testing.T, newWrapper NewWrapper) {
	// A wrap bound to nothing would be as movable as an unbound one.
	w := newWrapper(t)
	ctx := testContext(t)
	wrapped := mustWrap(ctx, t, w, randomDEK(t))
	for name, ad := range map[string][]byte{"nil": nil, "empty": {}, "too long": make([]byte, kek.MaxADSize+1)} {
		if b, err := w.Wrap(ctx, randomDEK(t), ad); err == nil {
			t.Errorf("Wrap with %s associated data succeeded (%d bytes)", name, len(b))
		}
		if b, err := w.Unwrap(ctx, wrapped, ad); err == nil {
			t.Errorf("Unwrap with %s associated data succeeded (%d bytes)", name, len(b))
		}
	}
}

func testWrapIsRandomized(t *testing.T, newWrapper NewWrapper) {
	// Deterministic wrapping would let anyone holding two wrapped blobs
	// tell whether they hold the same DEK.
	w := newWrapper(t)
	ctx := testContext(t)
	dek := randomDEK(t)
	a := mustWrap(ctx, t, w, dek)
	b := mustWrap(ctx, t, w, dek)
	if bytes.Equal(a, b) {
		t.Fatal("two wraps of the same DEK are identical")
	}
	for _, blob := range [][]byte{a, b} {
		if got := mustUnwrap(ctx, t, w, blob); !bytes.Equal(got, dek) {
			t.Fatal("Unwrap returned a different key")
		}
	}
}

func testUnwrapRejectsInvalid(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	ctx := testContext(t)
	dek := randomDEK(t)
	wrapped := mustWrap(ctx, t, w, dek)
	foreign := mustWrap(ctx, t, newWrapper(t), dek)

	cases := map[string][]byte{
		"empty":           {},
		"nil":             nil,
		"garbage":         []byte("this is not a wrapped key"),
		"random":          randomDEK(t),
		"truncated by 1":  wrapped[:len(wrapped)-1],
		"truncated half":  wrapped[:len(wrapped)/2],
		"first byte only": wrapped[:1],
		"extended":        append(slices.Clone(wrapped), 'A', 'A', 'A', 'A'),
		"other keyring":   foreign,
	}
	// Flip one bit in several places: header, middle, tail.
	for _, pos := range []int{0, len(wrapped) / 2, len(wrapped) - 1} {
		tampered := slices.Clone(wrapped)
		tampered[pos] ^= 0x01
		cases["bit flipped at "+strconv.Itoa(pos)] = tampered
	}
	for name, blob := range cases {
		t.Run(name, func(t *testing.T) { mustRefuse(ctx, t, w, blob, adA, dek) })
	}
	// The original must still work: rejecting bad input must not have
	// damaged the keyring.
	if got := mustUnwrap(ctx, t, w, wrapped); !bytes.Equal(got, dek) {
		t.Fatal("Unwrap returned a different key")
	}
}

func testCanceledContext(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	wrapped := mustWrap(testContext(t), t, w, randomDEK(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Wrap(ctx, randomDEK(t), adA); err == nil {
		t.Error("Wrap with a canceled context succeeded")
	}
	if _, err := w.Unwrap(ctx, wrapped, adA); err == nil {
		t.Error("Unwrap with a canceled context succeeded")
	}
}

// testNewWrapsAreBound: Describe says a new wrap is bound.
func testNewWrapsAreBound(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	r := rotator(t, w)
	wrapped := mustWrap(testContext(t), t, w, randomDEK(t))
	if info := mustDescribe(t, r, wrapped); !info.Bound {
		t.Fatalf("Describe(new wrap) = %+v, want Bound", info)
	}
}

// testRewrapRequiresAssociatedData: a rewrap bound to nothing would be as
// movable as an unbound blob.
func testRewrapRequiresAssociatedData(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	r := rotator(t, w)
	ctx := testContext(t)
	wrapped := mustWrap(ctx, t, w, randomDEK(t))
	for name, ad := range map[string][]byte{"nil": nil, "empty": {}, "too long": make([]byte, kek.MaxADSize+1)} {
		if _, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: wrapped, AD: ad}}); err == nil {
			t.Errorf("Rewrap with %s associated data succeeded", name)
		}
	}
}

func testRotation(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	r := rotator(t, w)
	ctx := testContext(t)

	oldDEK := randomDEK(t)
	keepDEK := randomDEK(t)
	oldBlob := mustWrap(ctx, t, w, oldDEK)
	keepBlob := mustWrap(ctx, t, w, keepDEK)
	v1 := mustWrappedVersion(t, r, oldBlob)
	if got := mustWrappedVersion(t, r, keepBlob); got != v1 {
		t.Fatalf("two wraps before rotation carry versions %d and %d", v1, got)
	}
	before := mustVersions(ctx, t, r)
	if !slices.Contains(before, v1) {
		t.Fatalf("Versions() = %v does not list the current version %d", before, v1)
	}

	v2, err := r.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if v2 <= v1 {
		t.Fatalf("Rotate returned version %d, not above %d", v2, v1)
	}
	if got := mustVersions(ctx, t, r); !slices.Contains(got, v1) || !slices.Contains(got, v2) {
		t.Fatalf("after Rotate, Versions() = %v; want both %d and %d", got, v1, v2)
	}
	newDEK := randomDEK(t)
	newBlob := mustWrap(ctx, t, w, newDEK)
	if got := mustWrappedVersion(t, r, newBlob); got != v2 {
		t.Fatalf("wrap after Rotate carries version %d, want %d", got, v2)
	}
	if got := mustUnwrap(ctx, t, w, oldBlob); !bytes.Equal(got, oldDEK) {
		t.Fatal("blob from before Rotate unwraps to a different key")
	}

	rewrapped, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: keepBlob, AD: adA}, {Wrapped: newBlob, AD: adA}})
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if len(rewrapped) != 2 {
		t.Fatalf("Rewrap returned %d blobs for 2", len(rewrapped))
	}
	for i, want := range [][]byte{keepDEK, newDEK} {
		if got := mustWrappedVersion(t, r, rewrapped[i]); got != v2 {
			t.Fatalf("rewrapped blob %d carries version %d, want %d", i, got, v2)
		}
		checkNoLeak(t, "rewrapped blob", rewrapped[i], want)
		if got := mustUnwrap(ctx, t, w, rewrapped[i]); !bytes.Equal(got, want) {
			t.Fatalf("rewrapped blob %d unwraps to a different key: order not preserved?", i)
		}
	}
	if out, err := r.Rewrap(ctx, nil); err != nil || len(out) != 0 {
		t.Fatalf("Rewrap(nil) = %d blobs, %v; want 0, nil", len(out), err)
	}
	if _, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: []byte("garbage"), AD: adA}}); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("Rewrap(garbage) error = %v, want kek.ErrInvalidWrapped", err)
	}
	// A rewrap cannot move a blob to other associated data: a wrapped
	// key parked under a decoy subject must not be carried into the
	// new KEK epoch.
	if _, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: newBlob, AD: adA}, {Wrapped: oldBlob, AD: adB}}); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("Rewrap(blob, other associated data) error = %v, want kek.ErrInvalidWrapped", err)
	}

	if err := r.Retire(ctx, v2); err != nil {
		t.Fatalf("Retire(%d): %v", v2, err)
	}
	// The point of Retire: a blob still under v1 (say, in an old backup)
	// is dead, while everything rewrapped survives.
	for name, blob := range map[string][]byte{"old": oldBlob, "kept (not rewrapped)": keepBlob} {
		got, err := w.Unwrap(ctx, blob, adA)
		if err == nil {
			t.Fatalf("%s blob under retired version %d still unwraps (%d bytes)", name, v1, len(got))
		}
		if !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("Unwrap(%s blob under retired version) error = %v, want kek.ErrInvalidWrapped", name, err)
		}
		checkNoLeak(t, "error text", []byte(err.Error()), oldDEK)
		checkNoLeak(t, "error text", []byte(err.Error()), keepDEK)
	}
	if _, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: oldBlob, AD: adA}}); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("Rewrap(blob under retired version) error = %v, want kek.ErrInvalidWrapped", err)
	}
	for i, want := range [][]byte{keepDEK, newDEK} {
		if got := mustUnwrap(ctx, t, w, rewrapped[i]); !bytes.Equal(got, want) {
			t.Fatalf("rewrapped blob %d no longer unwraps to its key after Retire", i)
		}
	}
	if got := mustUnwrap(ctx, t, w, newBlob); !bytes.Equal(got, newDEK) {
		t.Fatal("blob wrapped under the newest version no longer unwraps after Retire")
	}
	after := mustVersions(ctx, t, r)
	if slices.Contains(after, v1) || !slices.Contains(after, v2) {
		t.Fatalf("after Retire(%d), Versions() = %v; want %d gone and %d kept", v2, after, v1, v2)
	}
	// New wraps keep working and use the newest version.
	if got := mustWrappedVersion(t, r, mustWrap(ctx, t, w, randomDEK(t))); got != v2 {
		t.Fatalf("wrap after Retire carries version %d, want %d", got, v2)
	}
}

func testDescribeRejectsGarbage(t *testing.T, newWrapper NewWrapper) {
	w := newWrapper(t)
	r := rotator(t, w)
	for _, blob := range [][]byte{nil, {}, []byte("garbage"), randomDEK(t)} {
		if info, err := r.Describe(blob); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Errorf("Describe(%q) = %+v, %v; want kek.ErrInvalidWrapped", blob, info, err)
		}
	}
}

func testUnboundUnwraps(t *testing.T, newWrapper NewWrapper, wrapUnbound WrapUnbound) {
	// Blobs from before wraps were bound keep working, whatever
	// associated data is given: they were made without.
	w := newWrapper(t)
	ctx := testContext(t)
	dek := randomDEK(t)
	old := wrapUnbound(t, w, dek)
	checkNoLeak(t, "unbound blob", old, dek)
	for _, ad := range [][]byte{adA, adB} {
		got, err := w.Unwrap(ctx, old, ad)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("Unwrap(unbound blob) = %d bytes, %v; want the DEK", len(got), err)
		}
	}
}

func testRewrapBindsUnbound(t *testing.T, newWrapper NewWrapper, wrapUnbound WrapUnbound) {
	// Describe tells unbound blobs apart, and Rewrap binds them.
	w := newWrapper(t)
	ctx := testContext(t)
	dek := randomDEK(t)
	old := wrapUnbound(t, w, dek)
	r := rotator(t, w)
	info := mustDescribe(t, r, old)
	if info.Bound {
		t.Fatalf("Describe(unbound blob) = %+v, want not Bound", info)
	}
	current := mustDescribe(t, r, mustWrap(ctx, t, w, randomDEK(t))).Version
	if info.Version != current {
		t.Fatalf("Describe(unbound blob) version %d, want the current %d", info.Version, current)
	}
	out, err := r.Rewrap(ctx, []kek.RewrapItem{{Wrapped: old, AD: adA}, {Wrapped: mustWrap(ctx, t, w, dek), AD: adA}})
	if err != nil {
		t.Fatalf("Rewrap(unbound, bound): %v", err)
	}
	for i, blob := range out {
		if info := mustDescribe(t, r, blob); !info.Bound || info.Version != current {
			t.Fatalf("rewrapped blob %d: %+v, want bound under version %d", i, info, current)
		}
		checkNoLeak(t, "rewrapped blob", blob, dek)
		if got := mustUnwrap(ctx, t, w, blob); !bytes.Equal(got, dek) {
			t.Fatalf("rewrapped blob %d unwraps to a different key", i)
		}
		if _, err := w.Unwrap(ctx, blob, adB); !errors.Is(err, kek.ErrInvalidWrapped) {
			t.Fatalf("rewrapped blob %d unwraps with other associated data: %v", i, err)
		}
	}
}

// The suite's associated data: adA is what mustWrap and mustUnwrap use.
var (
	adA = []byte("tokenvault/kektest: subject A, key 1")
	adB = []byte("tokenvault/kektest: subject B, key 1")
)

func flipBit(b []byte, i int) []byte {
	out := slices.Clone(b)
	out[i] ^= 0x01
	return out
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func randomDEK(t *testing.T) []byte {
	t.Helper()
	dek := make([]byte, dekSize)
	if _, err := rand.Read(dek); err != nil {
		t.Fatal(err)
	}
	return dek
}

func mustWrap(ctx context.Context, t *testing.T, w kek.Wrapper, dek []byte) []byte {
	t.Helper()
	wrapped, err := w.Wrap(ctx, dek, adA)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if len(wrapped) == 0 {
		t.Fatal("Wrap returned an empty blob")
	}
	return wrapped
}

func mustUnwrap(ctx context.Context, t *testing.T, w kek.Wrapper, wrapped []byte) []byte {
	t.Helper()
	dek, err := w.Unwrap(ctx, wrapped, adA)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	return dek
}

// mustRefuse checks that wrapped does not unwrap with ad: ErrInvalidWrapped,
// and an error text without the DEK.
func mustRefuse(ctx context.Context, t *testing.T, w kek.Wrapper, wrapped, ad, dek []byte) {
	t.Helper()
	got, err := w.Unwrap(ctx, wrapped, ad)
	if err == nil {
		t.Fatalf("Unwrap succeeded (returned %d bytes)", len(got))
	}
	if !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("Unwrap error = %v, want errors.Is(err, kek.ErrInvalidWrapped)", err)
	}
	checkNoLeak(t, "error text", []byte(err.Error()), dek)
}

func mustDescribe(t *testing.T, r kek.Rotator, wrapped []byte) kek.WrappedInfo {
	t.Helper()
	info, err := r.Describe(wrapped)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	return info
}

func mustWrappedVersion(t *testing.T, r kek.Rotator, wrapped []byte) int {
	t.Helper()
	return mustDescribe(t, r, wrapped).Version
}

func mustVersions(ctx context.Context, t *testing.T, r kek.Rotator) []int {
	t.Helper()
	vs, err := r.Versions(ctx)
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out
}

// checkNoLeak fails if b contains the DEK raw or in a common text encoding:
// wrapped blobs and error messages get logged and stored.
func checkNoLeak(t *testing.T, what string, b, dek []byte) {
	t.Helper()
	if bytes.Equal(b, dek) {
		t.Fatalf("%s equals the DEK", what)
	}
	encodings := map[string][]byte{
		"raw":       dek,
		"hex":       []byte(hex.EncodeToString(dek)),
		"base64":    []byte(strings.TrimRight(base64.StdEncoding.EncodeToString(dek), "=")),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(dek)),
	}
	for enc, needle := range encodings {
		if bytes.Contains(b, needle) {
			t.Fatalf("%s contains the DEK (%s)", what, enc)
		}
	}
}
