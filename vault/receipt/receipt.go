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
// # Version 2: legal holds
//
// An erasure that leaves data under a legal hold, and the later shred of
// that data when its hold ends, are stated by a version 2 receipt
// ("tokenvault-erasure-receipt/v2"): the version 1 members plus
//
//	held               what the erasure left under hold: [{"class": "tax", "until": RFC 3339 UTC}], by class
//	hold_class         set in the receipt of a hold's shred: the class shredded ("" otherwise)
//	subject_erased_at  with hold_class: when the subject was erased ("" otherwise)
//
// In a hold's receipt erased_at is the time of the hold's shred and the
// counts are its records. Its signed bytes begin with the version 2 format
// name and add, after backups_undecryptable_by, the number of held
// entries, each class length-prefixed and its until, then hold_class and
// subject_erased_at (0 when unset). A receipt with no held data and no
// hold_class is always written as version 1, so every receipt has one
// encoding, and version 1 receipts made before holds still verify.
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

// Format names version 1 of the encoding, FormatV2 version 2 (holds).
const (
	Format   = "tokenvault-erasure-receipt/v1"
	FormatV2 = "tokenvault-erasure-receipt/v2"
)

// maxHeld bounds the held entries of a receipt (one per hold class).
const maxHeld = 64

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
	// Held lists what the erasure left under a legal hold, by class
	// (version 2).
	Held []Held
	// HoldClass is set in the receipt of a hold's shred: the class whose
	// data was shredded at ErasedAt; SubjectErasedAt is then when the
	// subject itself was erased (version 2).
	HoldClass       string
	SubjectErasedAt time.Time
	KeyID           string
	Signature       []byte
}

// Held is data an erasure left under a legal hold: of which class, and
// until when (then it is shredded, with a receipt of its own).
type Held struct {
	Class string
	Until time.Time
}

// v2 reports whether r needs version 2 of the encoding.
func (r Receipt) v2() bool { return len(r.Held) > 0 || r.HoldClass != "" }

// SignedBytes is the canonical byte string the signature covers.
func (r Receipt) SignedBytes() []byte {
	format := Format
	if r.v2() {
		format = FormatV2
	}
	b := make([]byte, 0, 128+len(r.Subject))
	b = append(b, format...)
	b = append(b, 0)
	b = appendLP(b, r.Subject)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ErasedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Records))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Lookups))
	b = binary.BigEndian.AppendUint64(b, uint64(r.BackupsUndecryptableBy.UnixNano()))
	if r.v2() {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Held)))
		for _, h := range r.Held {
			b = appendLP(b, h.Class)
			b = binary.BigEndian.AppendUint64(b, uint64(h.Until.UnixNano()))
		}
		b = appendLP(b, r.HoldClass)
		var at int64
		if !r.SubjectErasedAt.IsZero() {
			at = r.SubjectErasedAt.UnixNano()
		}
		b = binary.BigEndian.AppendUint64(b, uint64(at))
	}
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
	if !r.SubjectErasedAt.IsZero() {
		r.SubjectErasedAt = r.SubjectErasedAt.UTC()
	}
	if r.Held != nil {
		held := make([]Held, len(r.Held))
		for i, h := range r.Held {
			held[i] = Held{Class: h.Class, Until: h.Until.UTC()}
		}
		r.Held = held
	}
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

// fileHead and fileSig are the members of every version, first and last
// (embedded, their members are the file's own, in this order).
type fileHead struct {
	Format                 string `json:"format"`
	Subject                string `json:"subject_id"`
	ErasedAt               string `json:"erased_at"`
	Records                int64  `json:"records_erased"`
	Lookups                int64  `json:"lookups_erased"`
	BackupsUndecryptableBy string `json:"backups_undecryptable_by"`
}

type fileSig struct {
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

type fileV1 struct {
	fileHead
	fileSig
}

type fileV2 struct {
	fileHead
	Held            []heldJSON `json:"held"`
	HoldClass       string     `json:"hold_class"`
	SubjectErasedAt string     `json:"subject_erased_at"`
	fileSig
}

type heldJSON struct {
	Class string `json:"class"`
	Until string `json:"until"`
}

// Marshal encodes r as an indented JSON receipt file (version 2 when it
// states holds).
func (r Receipt) Marshal() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	head := fileHead{Format: Format, Subject: r.Subject,
		ErasedAt: r.ErasedAt.UTC().Format(time.RFC3339Nano), Records: r.Records, Lookups: r.Lookups,
		BackupsUndecryptableBy: r.BackupsUndecryptableBy.UTC().Format(time.RFC3339Nano)}
	sig := fileSig{KeyID: r.KeyID, Signature: base64.StdEncoding.EncodeToString(r.Signature)}
	// Encoding structs of strings and integers cannot fail.
	if !r.v2() {
		_ = enc.Encode(fileV1{head, sig})
		return buf.Bytes()
	}
	head.Format = FormatV2
	f := fileV2{fileHead: head, Held: []heldJSON{}, HoldClass: r.HoldClass, fileSig: sig}
	for _, h := range r.Held {
		f.Held = append(f.Held, heldJSON{Class: h.Class, Until: h.Until.UTC().Format(time.RFC3339Nano)})
	}
	if !r.SubjectErasedAt.IsZero() {
		f.SubjectErasedAt = r.SubjectErasedAt.UTC().Format(time.RFC3339Nano)
	}
	_ = enc.Encode(f)
	return buf.Bytes()
}

// Parse decodes a receipt file (version 1 or 2) strictly. It does not
// verify the signature.
func Parse(b []byte) (Receipt, error) { return parse(b, false) }

// ParseWithout decodes a receipt stored without its subject id and
// perhaps unsigned (the vault keeps hold receipts so: no subject id at
// rest), and puts subject back. The signature, if any, covers subject.
func ParseWithout(b []byte, subject string) (Receipt, error) {
	r, err := parse(b, true)
	if err != nil {
		return r, err
	}
	if r.Subject != "" {
		return r, fmt.Errorf("%w: a stored receipt holds a subject id", ErrInvalid)
	}
	r.Subject = subject
	return r, nil
}

func parse(b []byte, stored bool) (Receipt, error) {
	var r Receipt
	if len(b) > maxFileBytes {
		return r, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxFileBytes)
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return r, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var f fileV2
	var err error
	switch head.Format {
	case Format:
		var f1 fileV1
		if err = decodeStrict(b, &f1); err == nil {
			f = fileV2{fileHead: f1.fileHead, fileSig: f1.fileSig}
		}
	case FormatV2:
		err = decodeStrict(b, &f)
	default:
		return r, fmt.Errorf("%w: format is neither %q nor %q", ErrInvalid, Format, FormatV2)
	}
	if err != nil {
		return r, err
	}
	if (f.Subject == "" && !stored) || len(f.Subject) > maxSubjectBytes || !utf8.ValidString(f.Subject) {
		return r, fmt.Errorf("%w: subject_id: empty, too long or not UTF-8", ErrInvalid)
	}
	if f.Records < 0 || f.Lookups < 0 {
		return r, fmt.Errorf("%w: negative count", ErrInvalid)
	}
	if r.ErasedAt, err = parseTime("erased_at", f.ErasedAt); err != nil {
		return r, err
	}
	if r.BackupsUndecryptableBy, err = parseTime("backups_undecryptable_by", f.BackupsUndecryptableBy); err != nil {
		return r, err
	}
	if err := r.parseHolds(f); err != nil {
		return r, err
	}
	if stored && f.KeyID == "" && f.Signature == "" {
		r.Subject, r.Records, r.Lookups = f.Subject, f.Records, f.Lookups
		return r, nil
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

// parseHolds checks and copies the version 2 members. A version 2 file
// must state a hold (else it would be written as version 1), and a hold's
// shred states no held data.
func (r *Receipt) parseHolds(f fileV2) error {
	if f.Format != FormatV2 {
		return nil
	}
	switch {
	case len(f.Held) > maxHeld:
		return fmt.Errorf("%w: held: more than %d entries", ErrInvalid, maxHeld)
	case len(f.Held) == 0 && f.HoldClass == "":
		return fmt.Errorf("%w: a version 2 receipt without held data or hold_class", ErrInvalid)
	case len(f.Held) > 0 && f.HoldClass != "":
		return fmt.Errorf("%w: hold_class: a hold's receipt states no held data", ErrInvalid)
	case (f.HoldClass == "") != (f.SubjectErasedAt == ""):
		return fmt.Errorf("%w: subject_erased_at: set exactly when hold_class is", ErrInvalid)
	case !validClass(f.HoldClass) && f.HoldClass != "":
		return fmt.Errorf("%w: hold_class: not a hold class name", ErrInvalid)
	}
	for i, h := range f.Held {
		if !validClass(h.Class) || (i > 0 && h.Class <= f.Held[i-1].Class) {
			return fmt.Errorf("%w: held[%d].class: not a hold class name, or not in order", ErrInvalid, i)
		}
		until, err := parseTime(fmt.Sprintf("held[%d].until", i), h.Until)
		if err != nil {
			return err
		}
		r.Held = append(r.Held, Held{Class: h.Class, Until: until})
	}
	r.HoldClass = f.HoldClass
	if f.SubjectErasedAt != "" {
		t, err := parseTime("subject_erased_at", f.SubjectErasedAt)
		if err != nil {
			return err
		}
		r.SubjectErasedAt = t
	}
	return nil
}

// validClass mirrors vault.ValidHoldClassName (this package imports no
// vault): 1 to 32 of a-z, 0-9, '-', '_'.
func validClass(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the receipt", ErrInvalid)
	}
	return nil
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
