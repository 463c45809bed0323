// Package agekeyring is the embedded default key-encryption key (KEK)
// provider: a local keyring file, encrypted with [age], that holds one or
// more 256-bit KEK versions. Data keys are wrapped with AES-256-GCM under the
// newest version, bound to the caller's associated data.
//
// The keyring file is opened with an age identity (an X25519 identity file,
// the default) or a passphrase (age's scrypt recipient). The identity file
// is kept outside the data directory by default, so a copy of the data
// directory alone does not carry what opens it.
//
// Safety rules, because losing the keyring loses every subject's data:
//   - [Create] refuses to overwrite an existing file, and [Open] never
//     falls back to creating one: an existing keyring that cannot be opened
//     is an error, not a reason to start over.
//   - Every change is written to a temporary file, synced and renamed over
//     the old one, so a crash leaves either the old or the new keyring.
//
// Rotation epochs: [Provider.Rotate] adds a version; [Provider.Retire]
// destroys old versions (they are removed from the file), after which data
// keys wrapped under them, wherever copies of them live, cannot be unwrapped.
//
// [age]: https://age-encryption.org
package agekeyring

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

// Provider is the local keyring KEK.
type Provider interface {
	kek.Wrapper
	kek.Rotator
}

var _ Provider = (*keyring)(nil)

// ErrNotExist is returned by Open when there is no keyring file.
var ErrNotExist = errors.New("agekeyring: keyring file does not exist")

const (
	fileFormat     = "tokenvault-keyring-v1"
	wrappedVersion = 1
	wrappedHeader  = 1 + 4 // format version, KEK version
	wrapAADPrefix  = "tokenvault/agekeyring/v1"
)

type keyring struct {
	path       string
	recipients []age.Recipient

	mu       sync.RWMutex
	versions map[int]*version
	current  int
}

type version struct {
	key     *aead.Key
	created time.Time
}

// Create makes a new keyring with one fresh KEK version at path, encrypted
// to recipients. It fails if path exists.
func Create(path string, recipients ...age.Recipient) (Provider, error) {
	if len(recipients) == 0 {
		return nil, errors.New("agekeyring: no recipients")
	}
	k, err := aead.NewKey()
	if err != nil {
		return nil, err
	}
	kr := &keyring{path: path, recipients: recipients, current: 1,
		versions: map[int]*version{1: {key: k, created: time.Now().UTC()}}}
	if err := kr.save(true); err != nil {
		k.Zero()
		return nil, err
	}
	return kr, nil
}

// Open decrypts the keyring at path with identities. recipients are the
// ones future saves (after Rotate or Retire) encrypt to; normally the
// recipients of the same identities.
func Open(path string, identities []age.Identity, recipients []age.Recipient) (Provider, error) {
	if len(recipients) == 0 {
		return nil, errors.New("agekeyring: no recipients")
	}
	b, err := keyfile.ReadSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
	}
	if err != nil {
		return nil, fmt.Errorf("agekeyring: %w", err)
	}
	r, err := age.Decrypt(bytes.NewReader(b), identities...)
	if err != nil {
		return nil, fmt.Errorf("agekeyring: cannot decrypt keyring %s (wrong identity or passphrase?): %w", path, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, maxPlaintext+1))
	defer clear(plain)
	if err != nil {
		return nil, fmt.Errorf("agekeyring: reading keyring %s: %w", path, err)
	}
	current, versions, err := decodeFile(plain)
	if err != nil {
		return nil, fmt.Errorf("agekeyring: keyring %s %w", path, err)
	}
	return &keyring{path: path, recipients: recipients, current: current, versions: versions}, nil
}

// save writes the keyring atomically. With exclusive it refuses to replace
// an existing file. Callers hold kr.mu (or own kr exclusively).
func (kr *keyring) save(exclusive bool) error {
	plain, err := encodeFile(kr.current, kr.versions)
	if err != nil {
		return fmt.Errorf("agekeyring: %w", err)
	}
	defer clear(plain)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, kr.recipients...)
	if err != nil {
		return fmt.Errorf("agekeyring: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("agekeyring: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("agekeyring: %w", err)
	}
	// The file is age-encrypted, yet kept like the other secret files: a
	// passphrase-protected keyring is open to an offline guessing attack
	// by whoever can read it.
	if exclusive {
		err = keyfile.WriteExclusive(kr.path, buf.Bytes())
	} else {
		err = keyfile.Replace(kr.path, buf.Bytes())
	}
	if err != nil {
		return fmt.Errorf("agekeyring: %w", err)
	}
	return nil
}

// Wrapped-key formats. Both are format(1) | KEK version(4, big endian) |
// nonce | ciphertext | tag, sealed with AES-256-GCM under that version;
// they differ in the associated data:
//   - format 1 (wrappedVersion, written before wraps were bound):
//     wrapAADPrefix | version. Unwrap still opens it, whatever ad the
//     caller gives; Rewrap turns it into format 2.
//   - format 2 (formatBound): boundAADPrefix | version | the caller's ad.
//
// The prefixes differ, so changing a format-2 blob's first byte to 1 makes
// it fail to authenticate: a bound blob cannot be downgraded to an unbound
// one.
const (
	formatUnbound  = wrappedVersion
	formatBound    = 2
	boundAADPrefix = "tokenvault/agekeyring/v2"
)

func wrapAAD(format byte, v int, ad []byte) []byte {
	if format == formatUnbound {
		return binary.BigEndian.AppendUint32([]byte(wrapAADPrefix), uint32(v))
	}
	out := make([]byte, 0, len(boundAADPrefix)+4+len(ad))
	out = append(out, boundAADPrefix...)
	out = binary.BigEndian.AppendUint32(out, uint32(v))
	return append(out, ad...)
}

// Wrap seals dek under the current version, bound to ad (format 2).
func (kr *keyring) Wrap(ctx context.Context, dek, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := kek.CheckAD(ad); err != nil {
		return nil, fmt.Errorf("agekeyring: wrap: %w", err)
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.wrapLocked(dek, ad)
}

func (kr *keyring) wrapLocked(dek, ad []byte) ([]byte, error) {
	out := make([]byte, wrappedHeader, wrappedHeader+aead.Overhead+len(dek))
	out[0] = formatBound
	binary.BigEndian.PutUint32(out[1:], uint32(kr.current))
	return kr.versions[kr.current].key.Seal(out, dek, wrapAAD(formatBound, kr.current, ad))
}

func (kr *keyring) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := kek.CheckAD(ad); err != nil {
		return nil, fmt.Errorf("agekeyring: unwrap: %w", err)
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.unwrapLocked(wrapped, ad)
}

func (kr *keyring) unwrapLocked(wrapped, ad []byte) ([]byte, error) {
	info, err := kr.Describe(wrapped)
	if err != nil {
		return nil, err
	}
	ver := kr.versions[info.Version]
	if ver == nil {
		return nil, fmt.Errorf("%w: KEK version %d is not in the keyring (retired?)", kek.ErrInvalidWrapped, info.Version)
	}
	dek, err := ver.key.Open(nil, wrapped[wrappedHeader:], wrapAAD(wrapped[0], info.Version, ad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (wrong keyring, altered, or bound to other associated data)", kek.ErrInvalidWrapped)
	}
	return dek, nil
}

// Describe parses the header of a wrapped blob.
func (kr *keyring) Describe(wrapped []byte) (kek.WrappedInfo, error) {
	if len(wrapped) < wrappedHeader+aead.Overhead || (wrapped[0] != formatUnbound && wrapped[0] != formatBound) {
		return kek.WrappedInfo{}, fmt.Errorf("%w: malformed", kek.ErrInvalidWrapped)
	}
	v := binary.BigEndian.Uint32(wrapped[1:])
	if v == 0 || v > 1<<30 {
		return kek.WrappedInfo{}, fmt.Errorf("%w: malformed", kek.ErrInvalidWrapped)
	}
	return kek.WrappedInfo{Version: int(v), Bound: wrapped[0] == formatBound}, nil
}

func (kr *keyring) Rotate(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	k, err := aead.NewKey()
	if err != nil {
		return 0, err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	next := slices.Max(slices.Collect(maps.Keys(kr.versions))) + 1
	prev := kr.current
	kr.versions[next] = &version{key: k, created: time.Now().UTC()}
	kr.current = next
	if err := kr.save(false); err != nil {
		delete(kr.versions, next)
		kr.current = prev
		k.Zero()
		return 0, err
	}
	return next, nil
}

// Rewrap unwraps each item (format 1 or 2) and wraps it again under the
// current version in format 2, bound to the item's ad.
func (kr *keyring) Rewrap(ctx context.Context, items []kek.RewrapItem) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, it := range items {
		if err := kek.CheckAD(it.AD); err != nil {
			return nil, fmt.Errorf("agekeyring: rewrap: item %d: %w", i, err)
		}
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([][]byte, len(items))
	for i, it := range items {
		dek, err := kr.unwrapLocked(it.Wrapped, it.AD)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i], err = kr.wrapLocked(dek, it.AD)
		clear(dek)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (kr *keyring) Retire(ctx context.Context, minVersion int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if minVersion > kr.current {
		return fmt.Errorf("agekeyring: cannot retire the current version %d", kr.current)
	}
	dropped := map[int]*version{}
	for n, v := range kr.versions {
		if n < minVersion {
			dropped[n] = v
			delete(kr.versions, n)
		}
	}
	if err := kr.save(false); err != nil {
		maps.Copy(kr.versions, dropped) // the file still has them
		return err
	}
	for _, v := range dropped {
		v.key.Zero()
	}
	return nil
}

func (kr *keyring) Versions(ctx context.Context) ([]kek.Version, error) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	var out []kek.Version
	for _, n := range slices.Sorted(maps.Keys(kr.versions)) {
		out = append(out, kek.Version{Version: n, Created: kr.versions[n].created})
	}
	return out, nil
}
