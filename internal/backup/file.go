// Package backup is everything about tokenvault's backups: the backup
// and erasure-ledger file formats, the server side that takes signed,
// encrypted backups of a store (the gRPC handler only relays them), the
// client side that writes them to files, and the offline restore.
//
// A store takes part through two small interfaces: a [Source] writes the
// snapshot a backup holds, and a [Loader] (from an [Opener] the wiring
// passes to [Restore]) fills a new store from backups. The payload inside
// the encryption is the same for every store (see payload.go), so a
// backup of one kind of store restores into another; the shared suite in
// internal/backup/backuptest runs backup→restore round trips against any
// store that implements them.
//
// # Backup files
//
// A backup file is a short plaintext header followed by an age-encrypted
// payload (see [WritePayload]). Version 2, what `tokenvault backup`
// writes:
//
//	tokenvault-backup/v2
//	since 00000000000000000000
//	next  00000000000000001234
//	key   0123456789abcdef
//	sig   <128 hex digits>
//	<blank line>
//	<age ciphertext>
//
// The header says, without decrypting, where the backup sits in a chain:
// a full backup has since 0; an incremental one starts where the previous
// one's next ended. key and sig are the vault's Ed25519 signature (see
// [SignBackup]) over since, next, key and the SHA-256 of the age
// ciphertext that follows the header. The server encrypts to the
// recipients the caller names, so the server never needs a private key and
// only ciphertext leaves it; but a recipient's public key is all anyone
// needs to make an age file, so without the signature anyone could make a
// backup whose store entries a restore would load (drop a restriction, a
// ledger entry, ...). The restore verifies every signature before it
// decrypts anything, against a public key the operator supplies (never one
// from the file).
//
// Version 1 (tokenvault-backup/v1: the same header without key and sig)
// is unauthenticated: the restore refuses it unless told to accept legacy
// files. In both versions the payload repeats since and next inside the
// encryption, and a restore refuses a file whose header and payload
// disagree.
//
// The header has a fixed size per version, so the client writes a
// placeholder, streams the ciphertext after it and writes the header
// again, complete, when the server has sent next and the signature.
package backup

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/vault"
)

const (
	fileMagicV1  = "tokenvault-backup/v1\n"
	fileMagicV2  = "tokenvault-backup/v2\n"
	magicSize    = len(fileMagicV1) // both versions
	sinceLine    = "since %020d\n"
	nextLine     = "next  %020d\n"
	keyPrefix    = "key   "
	sigPrefix    = "sig   "
	keyIDHex     = 16
	sigHex       = 2 * ed25519.SignatureSize
	headerSizeV1 = magicSize + 27 + 27 + 1
	headerSizeV2 = magicSize + 27 + 27 + len(keyPrefix) + keyIDHex + 1 + len(sigPrefix) + sigHex + 1 + 1
	// NextOffset is where the next line starts (both versions).
	NextOffset = magicSize + 27
)

// ErrFormat: not a tokenvault backup file, or a damaged header.
var ErrFormat = errors.New("not a tokenvault backup file (or its header is damaged)")

// ErrUnauthenticated: a backup or ledger file carries no signature or MAC
// (a version 1 file, written before tokenvault authenticated them). The
// restore refuses it unless RestoreOptions.AllowUnauthenticated is set.
// ErrBadSignature and ErrBadMAC: the file carries one, and it does not
// verify (altered, truncated, reordered, or not made by this vault).
var (
	ErrUnauthenticated = errors.New("unauthenticated legacy file")
	ErrBadSignature    = errors.New("the backup's signature does not verify")
	ErrBadMAC          = errors.New("the erasure ledger's MAC does not verify")
)

// Header is the plaintext header of a backup file.
type Header struct {
	Since, Next uint64
	// KeyID and Signature are the vault's signature (version 2): the
	// signing key's fingerprint (16 hex digits, [keyfile.KeyID]) and an
	// Ed25519 signature over [BackupSignedBytes]. A version 1 header has
	// neither.
	KeyID     string
	Signature []byte
}

// Signed reports whether the header carries a signature (version 2).
func (h Header) Signed() bool { return h.Signature != nil }

// Size is the encoded size of the header.
func (h Header) Size() int {
	if h.Signed() {
		return headerSizeV2
	}
	return headerSizeV1
}

// Marshal encodes the header (h.Size() bytes): version 2 if it is
// signed, else version 1. A signed header's KeyID must be 16 lower-case
// hex digits and its Signature 64 bytes (what ParseHeader accepts).
func (h Header) Marshal() []byte {
	if !h.Signed() {
		return []byte(fileMagicV1 + fmt.Sprintf(sinceLine, h.Since) + fmt.Sprintf(nextLine, h.Next) + "\n")
	}
	return []byte(fileMagicV2 + fmt.Sprintf(sinceLine, h.Since) + fmt.Sprintf(nextLine, h.Next) +
		keyPrefix + h.KeyID + "\n" + sigPrefix + hex.EncodeToString(h.Signature) + "\n\n")
}

// NextLine is the next line alone, to write at NextOffset.
func NextLine(next uint64) []byte { return []byte(fmt.Sprintf(nextLine, next)) }

// ParseHeader decodes a header strictly (exactly one header, of either
// version).
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < magicSize {
		return h, ErrFormat
	}
	var size int
	switch string(b[:magicSize]) {
	case fileMagicV1:
		size = headerSizeV1
	case fileMagicV2:
		size = headerSizeV2
	default:
		return h, ErrFormat
	}
	if len(b) != size || b[size-1] != '\n' {
		return h, ErrFormat
	}
	var err error
	if h.Since, err = field(string(b[magicSize:NextOffset]), "since "); err != nil {
		return h, err
	}
	if h.Next, err = field(string(b[NextOffset:NextOffset+27]), "next  "); err != nil {
		return h, err
	}
	if size == headerSizeV1 {
		return h, nil
	}
	rest := string(b[NextOffset+27 : size-1])
	kl, sl, ok := strings.Cut(rest, "\n")
	if !ok {
		return h, ErrFormat
	}
	kid, ok := strings.CutPrefix(kl, keyPrefix)
	if !ok || len(kid) != keyIDHex || !lowerHex(kid) {
		return h, ErrFormat
	}
	sig, ok := strings.CutPrefix(sl, sigPrefix)
	if !ok || len(sig) != sigHex+1 || sig[sigHex] != '\n' || !lowerHex(sig[:sigHex]) {
		return h, ErrFormat
	}
	h.KeyID = kid
	h.Signature, _ = hex.DecodeString(sig[:sigHex]) // checked by lowerHex
	return h, nil
}

// lowerHex: only the digits hex.EncodeToString writes, so that every
// accepted header re-encodes to the same bytes.
func lowerHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return len(s)%2 == 0
}

func field(line, name string) (uint64, error) {
	digits, ok := strings.CutPrefix(line, name)
	if !ok || len(digits) != 21 || digits[20] != '\n' {
		return 0, ErrFormat
	}
	for _, c := range digits[:20] {
		if c < '0' || c > '9' {
			return 0, ErrFormat
		}
	}
	n, err := strconv.ParseUint(digits[:20], 10, 64)
	if err != nil {
		return 0, ErrFormat
	}
	return n, nil
}

// ReadHeader reads the header at the start of r (either version).
func ReadHeader(r io.Reader) (Header, error) {
	b := make([]byte, headerSizeV2)
	if _, err := io.ReadFull(r, b[:magicSize]); err != nil {
		return Header{}, eofFormat(err)
	}
	size := headerSizeV1
	if string(b[:magicSize]) == fileMagicV2 {
		size = headerSizeV2
	}
	if _, err := io.ReadFull(r, b[magicSize:size]); err != nil {
		return Header{}, eofFormat(err)
	}
	return ParseHeader(b[:size])
}

func eofFormat(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrFormat
	}
	return err
}

// backupSigLabel separates backup signatures from everything else the
// same key signs (erasure receipts start with their own format name).
const backupSigLabel = "tokenvault-backup/v2 signature"

// BackupSignedBytes is what a backup's signature covers: a label, since,
// next, the signing key id and the SHA-256 of the age ciphertext, each
// fixed-size or length-prefixed.
func BackupSignedBytes(since, next uint64, keyID string, digest []byte) []byte {
	b := make([]byte, 0, len(backupSigLabel)+1+16+4+len(keyID)+4+len(digest))
	b = append(b, backupSigLabel...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, since)
	b = binary.BigEndian.AppendUint64(b, next)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keyID)))
	b = append(b, keyID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(digest)))
	return append(b, digest...)
}

// SignBackup is the signed header of a backup whose ciphertext has the
// SHA-256 digest (the server calls it at the end of the stream).
func SignBackup(priv ed25519.PrivateKey, since, next uint64, digest []byte) Header {
	kid := keyfile.KeyID(priv.Public().(ed25519.PublicKey))
	return Header{Since: since, Next: next, KeyID: kid,
		Signature: ed25519.Sign(priv, BackupSignedBytes(since, next, kid, digest))}
}

// verify checks a signed header against pub and the ciphertext digest.
// Errors name no key bytes; the caller adds the file name.
func (h Header) verify(pub ed25519.PublicKey, digest []byte) error {
	if want := keyfile.KeyID(pub); h.KeyID != want {
		return fmt.Errorf("%w: it was signed by key %s, but the verification key given is %s (use the public key of the vault that took the backup)", ErrBadSignature, h.KeyID, want)
	}
	if !ed25519.Verify(pub, BackupSignedBytes(h.Since, h.Next, h.KeyID, digest), h.Signature) {
		return fmt.Errorf("%w: the file was altered or truncated, or it was not made by this vault", ErrBadSignature)
	}
	return nil
}

// LoadVerifyKey reads the public key that verifies backups: a PEM PUBLIC
// KEY file (`tokenvault receipt pubkey --to FILE`) or the vault's signing
// key file itself (receipt-signing.pem), whose public half is used.
func LoadVerifyKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if pub, err := keyfile.ParsePublicKey(b); err == nil {
		return pub, nil
	}
	priv, err := keyfile.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: neither a PEM Ed25519 public key nor the vault's signing key file", path)
	}
	defer clear(priv)
	return append(ed25519.PublicKey(nil), priv.Public().(ed25519.PublicKey)...), nil
}

// ciphertextDigest is the SHA-256 of what is left of r.
func ciphertextDigest(r io.Reader) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// ParseRecipients parses age recipients (age1... X25519 or post-quantum
// hybrid keys), naming the bad one as recipients[i] in a
// [vault.FieldError] (an invalid argument).
func ParseRecipients(in []string) ([]age.Recipient, error) {
	if len(in) == 0 {
		return nil, &vault.FieldError{Field: "recipients", Reason: "at least one age recipient is required", Err: vault.ErrInvalidArgument}
	}
	var out []age.Recipient
	for i, s := range in {
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 || strings.ContainsAny(s, "\n#") {
			return nil, &vault.FieldError{Field: fmt.Sprintf("recipients[%d]", i), Reason: "not an age public key (age1...)", Err: vault.ErrInvalidArgument}
		}
		out = append(out, rs[0])
	}
	return out, nil
}

// ParseIdentityFile parses an age identity file (as age-keygen writes).
func ParseIdentityFile(r io.Reader) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("not an age identity file: %w", err)
	}
	return ids, nil
}

// Encrypt returns a writer that age-encrypts to recipients into w; Close
// it to finish the encryption.
func Encrypt(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, recipients...)
}
