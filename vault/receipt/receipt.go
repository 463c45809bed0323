// Package receipt is the erasure receipt, the one type that says what an
// erasure did: [vault.Vault.EraseSubject] returns it with its signed
// encoding, the gRPC layer copies it onto the wire, the client hands it
// back, and `tokenvault receipt verify` checks the signed file.
//
// # Encoding (version 1)
//
// A receipt file is a JSON object with exactly these members:
//
//	format                    "tokenvault-erasure-receipt/v1"
//	subject_id                the erased subject
//	erased_at                 RFC 3339 UTC time of the crypto-shred
//	records_erased            tokens whose records were removed
//	lookups_erased            deterministic lookup entries removed
//	backups_undecryptable_by  RFC 3339 UTC: erased_at + KEK rotation interval + backup retention
//	key_id                    fingerprint of the signing key (16 hex digits)
//	signature                 Ed25519 signature, standard base64
//
// The signature is detached: it covers not the JSON text (whose spacing and
// member order a reader may change) but a canonical byte string built from
// the fields (see [Receipt.SignedBytes]): the format name, then every field
// length-prefixed or fixed-size, times as Unix nanoseconds. A verifier
// parses the JSON strictly (unknown members, a wrong format name, non-UTC
// times are errors), rebuilds those bytes and checks the signature, so any
// change to any field fails verification.
//
// [vault.Vault.EraseSubject]: https://pkg.go.dev/github.com/tokenvault/tokenvault/vault#Vault.EraseSubject
package receipt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

// Format names version 1 of the encoding.
const Format = "tokenvault-erasure-receipt/v1"

// Limits of the strict parser.
const (
	maxFileBytes    = 16 << 10
	maxSubjectBytes = 1024
)

// ErrInvalid: the receipt is malformed. ErrBadSignature: it is well formed
// but the signature does not verify (altered, or signed by another key).
var (
	ErrInvalid      = errors.New("receipt: malformed")
	ErrBadSignature = errors.New("receipt: signature does not verify")
)

// Receipt states what an erasure did. KeyID and Signature are set once the
// vault has signed it ([Sign]); they are empty when the vault has no
// receipt key.
type Receipt struct {
	Subject  string
	ErasedAt time.Time
	Records  int64
	Lookups  int64
	// BackupsUndecryptableBy bounds when every backup copy of the subject's
	// data key becomes undecryptable: the KEK version that wrapped it in
	// any backup is retired by then (README, "Rotation epochs").
	BackupsUndecryptableBy time.Time
	KeyID                  string
	Signature              []byte
}

// SignedBytes is the canonical byte string the signature covers.
func (r Receipt) SignedBytes() []byte {
	b := make([]byte, 0, 128+len(r.Subject))
	b = append(b, Format...)
	b = append(b, 0)
	b = appendLP(b, r.Subject)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ErasedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Records))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Lookups))
	b = binary.BigEndian.AppendUint64(b, uint64(r.BackupsUndecryptableBy.UnixNano()))
	return appendLP(b, r.KeyID)
}

func appendLP(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Sign sets KeyID and Signature for priv. Times are truncated to UTC
// (the encoding keeps nanoseconds).
func Sign(r Receipt, priv ed25519.PrivateKey) Receipt {
	r.ErasedAt, r.BackupsUndecryptableBy = r.ErasedAt.UTC(), r.BackupsUndecryptableBy.UTC()
	r.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	r.Signature = ed25519.Sign(priv, r.SignedBytes())
	return r
}

// Verify checks the signature against pub.
func (r Receipt) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: not an Ed25519 public key", ErrBadSignature)
	}
	if want := KeyID(pub); r.KeyID != want {
		return fmt.Errorf("%w: signed by key %s, not by this public key (%s)", ErrBadSignature, r.KeyID, want)
	}
	if !ed25519.Verify(pub, r.SignedBytes(), r.Signature) {
		return fmt.Errorf("%w: the receipt was altered or the signature is not the vault's", ErrBadSignature)
	}
	return nil
}

// KeyID is the fingerprint of a signing public key: the first 8 bytes of
// its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string { return keyfile.KeyID(pub) }

type fileV1 struct {
	Format                 string `json:"format"`
	Subject                string `json:"subject_id"`
	ErasedAt               string `json:"erased_at"`
	Records                int64  `json:"records_erased"`
	Lookups                int64  `json:"lookups_erased"`
	BackupsUndecryptableBy string `json:"backups_undecryptable_by"`
	KeyID                  string `json:"key_id"`
	Signature              string `json:"signature"`
}

// Marshal encodes r as an indented JSON receipt file.
func (r Receipt) Marshal() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	// Encoding a struct of strings and integers cannot fail.
	_ = enc.Encode(fileV1{
		Format: Format, Subject: r.Subject,
		ErasedAt: r.ErasedAt.UTC().Format(time.RFC3339Nano), Records: r.Records, Lookups: r.Lookups,
		BackupsUndecryptableBy: r.BackupsUndecryptableBy.UTC().Format(time.RFC3339Nano),
		KeyID:                  r.KeyID, Signature: base64.StdEncoding.EncodeToString(r.Signature),
	})
	return buf.Bytes()
}

// Parse decodes a receipt file strictly. It does not verify the signature.
func Parse(b []byte) (Receipt, error) {
	var r Receipt
	if len(b) > maxFileBytes {
		return r, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f fileV1
	if err := dec.Decode(&f); err != nil {
		return r, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return r, fmt.Errorf("%w: data after the receipt", ErrInvalid)
	}
	if f.Format != Format {
		return r, fmt.Errorf("%w: format is not %q", ErrInvalid, Format)
	}
	if f.Subject == "" || len(f.Subject) > maxSubjectBytes || !utf8.ValidString(f.Subject) {
		return r, fmt.Errorf("%w: subject_id: empty, too long or not UTF-8", ErrInvalid)
	}
	if f.Records < 0 || f.Lookups < 0 {
		return r, fmt.Errorf("%w: negative count", ErrInvalid)
	}
	var err error
	if r.ErasedAt, err = parseTime("erased_at", f.ErasedAt); err != nil {
		return r, err
	}
	if r.BackupsUndecryptableBy, err = parseTime("backups_undecryptable_by", f.BackupsUndecryptableBy); err != nil {
		return r, err
	}
	if kid, err := hex.DecodeString(f.KeyID); err != nil || len(kid) != 8 || hex.EncodeToString(kid) != f.KeyID {
		return r, fmt.Errorf("%w: key_id: want 16 lower-case hex digits", ErrInvalid)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(f.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return r, fmt.Errorf("%w: signature: want %d bytes in standard base64", ErrInvalid, ed25519.SignatureSize)
	}
	r.Subject, r.Records, r.Lookups, r.KeyID, r.Signature = f.Subject, f.Records, f.Lookups, f.KeyID, sig
	return r, nil
}

// parseTime accepts RFC 3339 UTC times within the range Unix nanoseconds
// (the signed form) can hold.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Location() != time.UTC || len(s) == 0 || s[len(s)-1] != 'Z' {
		return t, fmt.Errorf("%w: %s: want an RFC 3339 UTC time", ErrInvalid, field)
	}
	if t.Year() < 1970 || t.Year() > 2200 {
		return t, fmt.Errorf("%w: %s: out of range", ErrInvalid, field)
	}
	return t, nil
}

// Key files: the signing key and its public half are kept and parsed by
// crypto/keyfile, the one home of key files; these name its public-key
// helpers for the receipt's users.

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block.
func MarshalPublicKey(pub ed25519.PublicKey) []byte { return keyfile.MarshalPublicKey(pub) }

// ParsePublicKey decodes a PEM "PUBLIC KEY" block holding an Ed25519 key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	pub, err := keyfile.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return pub, nil
}
