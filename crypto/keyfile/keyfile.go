// Package keyfile is the one home of tokenvault's secret files: every key
// file is read and written through it, so that every one gets the same
// protection.
//
// Writing: a secret file is created with mode 0600 in a directory made with
// mode 0700, from a synced temporary file that is then linked (never
// replacing an existing file: [WriteExclusive]) or renamed (replacing it
// atomically: [Replace]) into place, and the directory is synced. A crash or
// an error leaves either no file or a complete one, never a partial one.
//
// Reading: [ReadSecret] refuses a file that its owner's group or others may
// read or write (as ssh refuses such private keys): a key that others can
// read is a leaked key, and one they can write may have been swapped.
//
// The files kept here:
//   - the receipt and audit signing keys (Ed25519, PEM PKCS #8, see
//     [ParsePrivateKey]); their public halves are exportable;
//   - the erasure-ledger key (256 bits, see [ParseLedgerKey]), which keys
//     the ledger's hashes of erased subject ids. A restore needs it to
//     recognise erased subjects.
//
// Other packages keep their own formats but use [ReadSecret] and the
// writers: the age keyring and its identity file (crypto/kek/agekeyring),
// the backup identity (cmd/tokenvault restore).
//
// Error texts name files but never contain key bytes.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// ErrNotExist: the key file is missing and may not be created.
var ErrNotExist = errors.New("keyfile: key file does not exist")

// ErrPermissions: a secret file may be read or written by its group or by
// others.
var ErrPermissions = errors.New("keyfile: secret file is accessible by group or others")

// maxSecretFile bounds what ReadSecret reads: key files are a few hundred
// bytes, a keyring with thousands of versions well under this.
const maxSecretFile = 1 << 20

// ReadSecret reads the secret file at path after checking that only its
// owner may read or write it. A missing file is an error wrapping
// [fs.ErrNotExist]; loose permissions one wrapping [ErrPermissions]. The
// caller should clear the returned bytes once parsed.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	// Stat the opened file, not the path: no window in which the file
	// checked and the file read differ.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if err := checkPermissions(path, st); err != nil {
		return nil, err
	}
	if st.Size() > maxSecretFile {
		return nil, fmt.Errorf("keyfile: %s: larger than %d bytes, not a key file", path, maxSecretFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("keyfile: reading %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		clear(b)
		return nil, fmt.Errorf("keyfile: %s: larger than %d bytes, not a key file", path, maxSecretFile)
	}
	return b, nil
}

// checkPermissions refuses any group or other permission bit, like ssh.
// Windows has no such bits (Go reports 0666 for every writable file), so
// there the check is skipped and ACLs are the administrator's business.
func checkPermissions(path string, st fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, but only its owner may have access (chmod 600 %s)", ErrPermissions, path, perm, path)
	}
	return checkOwner(path, st)
}

// WriteExclusive creates path (mode 0600, directory 0700) with content,
// refusing to overwrite an existing file (the error then wraps
// [fs.ErrExist]). Every secret or evidence file tokenvault creates goes
// through it: a new key must never silently replace an old one.
func WriteExclusive(path string, content []byte) error {
	return write(path, content, 0o600, false)
}

// WritePublic is WriteExclusive for a file others may read (mode 0644): a
// public key beside its private key.
func WritePublic(path string, content []byte) error {
	return write(path, content, 0o644, false)
}

// Replace writes path (mode 0600, directory 0700) with content, replacing
// it atomically if it exists: readers and a crash see the old file or the
// new one.
func Replace(path string, content []byte) error {
	return write(path, content, 0o600, true)
}

// write stages content in a synced temporary file beside path and links
// (exclusive) or renames (replace) it into place, then syncs the
// directory so the new name survives a crash.
func write(path string, content []byte, perm fs.FileMode, replace bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("keyfile: creating %s: %w", path, err)
	}
	// After a link the temporary name goes and the file stays under path;
	// after a rename or a failure this removes nothing or the leftover.
	defer os.Remove(tmp.Name())
	if perm != 0o600 {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		_, err = tmp.Write(content)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keyfile: writing %s: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: create the file exclusively
		// in place instead (a crash may then leave a partial file, which
		// no loader accepts).
		err = writeInPlace(path, content, perm)
	}
	if err != nil {
		return fmt.Errorf("keyfile: creating %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keyfile: syncing directory of %s: %w", path, err)
	}
	return nil
}

// writeInPlace creates path exclusively and removes it again if writing
// fails.
func writeInPlace(path string, content []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
