package vault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Record is one tokenized value as stored. Sealed is the value encrypted
// under the subject's record key, bound (see AADVersion) to token, subject,
// key id and kind, and to Created, Expires and Lookup.
type Record struct {
	Token   string
	KeyID   KeyID
	Kind    format.Kind
	Created time.Time
	// Lookup is the deterministic lookup key (nil for random tokens), kept
	// so the lookup entry can be found from the record.
	Lookup []byte
	Sealed []byte
	// Expires is when the record's retention ends (zero: never). An
	// expired record is never revealed and is purged in the background.
	Expires time.Time
	// AADVersion says which associated data Sealed is bound to:
	// RecordAADv2 for every record written now, RecordAADv1 for records
	// written before records bound their metadata. Stores keep it with the
	// record; they need not authenticate it (see RecordAADv1).
	AADVersion int
	// Cursor is set by RightsStore.KeyRecords alone, and never stored:
	// passed as its after, the listing resumes after this record. It is
	// store-defined (a store may key its listing by something a deleted
	// record no longer tells). It carries no value, and no token in the
	// clear, but may carry an unkeyed hash of the token, which a short
	// token space lets one reverse: keep it where the token may be.
	Cursor string
}

// Record AAD versions ([Record.AADVersion]).
const (
	// RecordAADv1 binds the sealed value to token, subject, key id and
	// kind only: Created, Expires and Lookup of such a record are not
	// authenticated. Records written before v2 have it and still open.
	// Calling a v2 record v1 does not help a store writer: its value then
	// fails to open, since the two versions' associated data differ.
	RecordAADv1 = 1
	// RecordAADv2 also binds Created, Expires and Lookup, so that someone
	// who can write the store cannot, say, extend a token's retention.
	RecordAADv2 = 2
)

// sealRecord seals value into r.Sealed, bound to r (RecordAADv2).
func sealRecord(keys *subjectKeys, subject string, r *Record, value string) error {
	r.AADVersion = RecordAADv2
	// The associated data and the plaintext's copy share one buffer (one
	// allocation per field, not two), and the copy is zeroed once sealed.
	// (value itself is a string, which cannot be zeroed; this call leaves
	// no copy of its own behind.)
	buf := make([]byte, 0, recordAADCap(subject, r)+len(value))
	aad, err := appendRecordAAD(buf, subject, r)
	if err != nil {
		return err
	}
	plain := append(aad[len(aad):], value...)
	r.Sealed, err = keys.record.Seal(nil, plain, aad)
	clear(plain)
	return err
}

// openRecord opens r's value with the associated data of its AAD version.
// ErrCorrupt when it fails: the record was altered in the store (its
// value, or any part of it that its version binds), or moved.
func openRecord(keys *subjectKeys, subject string, r Record) (string, error) {
	aad, err := appendRecordAAD(nil, subject, &r)
	if err != nil {
		return "", err
	}
	plain, err := keys.record.Open(nil, r.Sealed, aad)
	if errors.Is(err, aead.ErrDecrypt) {
		return "", fmt.Errorf("%w: token record failed authentication", ErrCorrupt)
	}
	if err != nil {
		return "", err
	}
	value := string(plain)
	clear(plain) // the value lives on only in the string handed back
	return value, nil
}

// appendRecordAAD appends to aad (nil: a buffer of its own) the
// associated data r's value is sealed with: a record
// copied under another token or subject fails to open, and with
// RecordAADv2, so does one whose creation, expiry or lookup key was edited.
//
//	v1: "tokenvault/record/v1" | key id | LP(subject) | kind | LP(token)
//	v2: "tokenvault/record/v2" | key id | LP(subject) | kind | LP(token) |
//	    created (µs, 8) | expires (µs, 8; 0: none) | LP1(lookup)
//
// LP is a 4-byte big-endian length prefix, LP1 a 1-byte one.
func appendRecordAAD(aad []byte, subject string, r *Record) ([]byte, error) {
	var label string
	switch r.AADVersion {
	case RecordAADv1:
		label = "tokenvault/record/v1"
	case RecordAADv2:
		label = "tokenvault/record/v2"
	default:
		return nil, fmt.Errorf("%w: token record of unknown version %d", ErrCorrupt, r.AADVersion)
	}
	if aad == nil {
		aad = make([]byte, 0, recordAADCap(subject, r))
	}
	aad = append(aad, label...)
	aad = append(aad, r.KeyID[:]...)
	aad = appendLP(aad, subject)
	aad = append(aad, byte(r.Kind))
	aad = appendLP(aad, r.Token)
	if r.AADVersion == RecordAADv1 {
		return aad, nil
	}
	if len(r.Lookup) > 255 {
		return nil, fmt.Errorf("%w: token record lookup key too long", ErrCorrupt)
	}
	aad = binary.BigEndian.AppendUint64(aad, uint64(unixMicro(r.Created)))
	aad = binary.BigEndian.AppendUint64(aad, uint64(unixMicro(r.Expires)))
	aad = append(aad, byte(len(r.Lookup)))
	return append(aad, r.Lookup...), nil
}

// recordAADCap bounds the length of r's associated data (either version).
func recordAADCap(subject string, r *Record) int {
	return 48 + len(subject) + len(r.Token) + 17 + len(r.Lookup)
}

// unixMicro is t in microseconds since 1970, 0 for the zero time (no
// expiry), whose UnixMicro would not be 0.
func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func appendLP(b []byte, s string) []byte {
	n := len(s)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, s...)
}
