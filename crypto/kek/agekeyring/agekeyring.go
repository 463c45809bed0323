// Package agekeyring is the embedded default key-encryption key (KEK)
// provider: a local keyring file, encrypted with [age], that holds one or
// more 256-bit KEK versions. Data keys are wrapped with AES-256-GCM under the
// newest version.
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

func wrapAAD(v int) []byte {
	return binary.BigEndian.AppendUint32([]byte(wrapAADPrefix), uint32(v))
}

// Wrap seals dek under the current version:
// format(1) | version(4, big endian) | nonce | ciphertext | tag.
func (kr *keyring) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.wrapLocked(dek)
}

func (kr *keyring) wrapLocked(dek []byte) ([]byte, error) {
	out := make([]byte, wrappedHeader, wrappedHeader+aead.Overhead+len(dek))
	out[0] = wrappedVersion
	binary.BigEndian.PutUint32(out[1:], uint32(kr.current))
	return kr.versions[kr.current].key.Seal(out, dek, wrapAAD(kr.current))
}

func (kr *keyring) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.unwrapLocked(wrapped)
}

func (kr *keyring) unwrapLocked(wrapped []byte) ([]byte, error) {
	v, err := kr.WrappedVersion(wrapped)
	if err != nil {
		return nil, err
	}
	ver := kr.versions[v]
	if ver == nil {
		return nil, fmt.Errorf("%w: KEK version %d is not in the keyring (retired?)", kek.ErrInvalidWrapped, v)
	}
	dek, err := ver.key.Open(nil, wrapped[wrappedHeader:], wrapAAD(v))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", kek.ErrInvalidWrapped)
	}
	return dek, nil
}

// WrappedVersion parses the header of a wrapped blob.
func (kr *keyring) WrappedVersion(wrapped []byte) (int, error) {
	if len(wrapped) < wrappedHeader+aead.Overhead || wrapped[0] != wrappedVersion {
		return 0, fmt.Errorf("%w: malformed", kek.ErrInvalidWrapped)
	}
	v := binary.BigEndian.Uint32(wrapped[1:])
	if v == 0 || v > 1<<30 {
		return 0, fmt.Errorf("%w: malformed", kek.ErrInvalidWrapped)
	}
	return int(v), nil
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

func (kr *keyring) Rewrap(ctx context.Context, wrapped [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([][]byte, len(wrapped))
	for i, w := range wrapped {
		dek, err := kr.unwrapLocked(w)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i], err = kr.wrapLocked(dek)
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
