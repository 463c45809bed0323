package backup

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Erasure-ledger files (`tokenvault ledger export`): JSON lines. The first
// line is the header, then one line per erased subject, then the MAC:
//
//	{"format":"tokenvault-erasure-ledger/v2","ledger_key_id":"0123456789abcdef","entries":2}
//	{"subject_hash":"<64 hex digits>","erased_at":"2025-01-02T03:04:05.000000006Z"}
//	...
//	{"mac":"<64 hex digits>"}
//
// Hashes are HMAC-SHA256 of subject ids under the vault's ledger key, so
// the file does not reveal who was erased. ledger_key_id fingerprints that
// key: a restore refuses a ledger made with another key (every hash would
// silently miss). entries makes a truncated file an error.
//
// mac authenticates the whole ledger under the ledger key (see
// [LedgerSum]): the server computes it over the entries as it streams them,
// and the restore refuses a file whose entries were dropped, added,
// changed or reordered. Without it, deleting one line would bring an
// erased subject back. The parser accepts a version 2 file only in the
// exact bytes Marshal writes, so no byte of the file is outside what the
// MAC covers.
//
// Version 1 (tokenvault-erasure-ledger/v1: no mac line) is what earlier
// releases wrote; it parses, but the restore refuses it unless told to
// accept unauthenticated legacy files.

// Ledger file format names.
const (
	LedgerFormat   = "tokenvault-erasure-ledger/v2"
	LedgerFormatV1 = "tokenvault-erasure-ledger/v1"
)

// ErrLedger: the ledger file is malformed or truncated.
var ErrLedger = errors.New("erasure ledger file is malformed")

// maxLedgerLine bounds one line of a ledger file.
const maxLedgerLine = 1 << 10

// ledgerMACSize is an HMAC-SHA256.
const ledgerMACSize = sha256.Size

// Ledger is an erasure ledger and the key id it was made with.
type Ledger struct {
	KeyID   string
	Entries []vault.LedgerEntry
	// MAC authenticates KeyID and Entries, in order, under the ledger key
	// (LedgerSum). nil: an unauthenticated ledger (a version 1 file, or an
	// older server).
	MAC []byte
}

type ledgerHeader struct {
	Format  string `json:"format"`
	KeyID   string `json:"ledger_key_id"`
	Entries int64  `json:"entries"`
}

type ledgerLine struct {
	Hash     string `json:"subject_hash"`
	ErasedAt string `json:"erased_at"`
}

type ledgerMACLine struct {
	MAC string `json:"mac"`
}

// Marshal encodes the ledger file: version 2 with its MAC, or version 1
// when it has none.
func (l Ledger) Marshal() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	format := LedgerFormat
	if l.MAC == nil {
		format = LedgerFormatV1
	}
	// Encoding these plain structs cannot fail.
	_ = enc.Encode(ledgerHeader{Format: format, KeyID: l.KeyID, Entries: int64(len(l.Entries))})
	for _, e := range l.Entries {
		_ = enc.Encode(ledgerLineOf(e))
	}
	if l.MAC != nil {
		_ = enc.Encode(ledgerMACLine{MAC: hex.EncodeToString(l.MAC)})
	}
	return b.Bytes()
}

func ledgerLineOf(e vault.LedgerEntry) ledgerLine {
	return ledgerLine{Hash: hex.EncodeToString(e.Hash), ErasedAt: e.ErasedAt.UTC().Format(time.RFC3339Nano)}
}

// canonical is the one encoding Marshal writes for v (with its newline).
func canonical(v any) []byte {
	b, _ := json.Marshal(v) // plain structs of strings and integers
	return append(b, '\n')
}

// splitLines is bufio.ScanLines keeping the newline, so that a version 2
// line can be compared byte for byte with its canonical encoding.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// ParseLedger decodes a ledger file strictly. It does not verify the MAC
// (that needs the ledger key: [Ledger.Verify]).
func ParseLedger(r io.Reader) (Ledger, error) {
	var l Ledger
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, maxLedgerLine), maxLedgerLine)
	sc.Split(splitLines)
	line := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrLedger, line, fmt.Sprintf(format, args...))
	}
	var h ledgerHeader
	want := int64(-1)
	v2, macDone := false, false
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		text := bytes.TrimSuffix(raw, []byte("\n"))
		if !v2 {
			text = bytes.TrimSuffix(text, []byte("\r")) // as bufio.ScanLines did for v1
		}
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		// strict: a version 2 line must be exactly its canonical encoding.
		strict := func(v any) error {
			if v2 && !bytes.Equal(raw, canonical(v)) {
				return bad("not in canonical form")
			}
			return nil
		}
		switch {
		case want < 0:
			if err := dec.Decode(&h); err != nil || dec.More() {
				return l, bad("not a ledger header")
			}
			switch h.Format {
			case LedgerFormat:
				v2 = true
			case LedgerFormatV1:
			default:
				return l, bad("format is not %q", LedgerFormat)
			}
			if k, err := hex.DecodeString(h.KeyID); err != nil || len(k) != 8 || hex.EncodeToString(k) != h.KeyID {
				return l, bad("ledger_key_id: want 16 lower-case hex digits")
			}
			if h.Entries < 0 {
				return l, bad("negative entry count")
			}
			if err := strict(h); err != nil {
				return l, err
			}
			l.KeyID, want = h.KeyID, h.Entries
			continue
		case macDone:
			return l, bad("data after the mac line")
		case int64(len(l.Entries)) == want && v2:
			var m ledgerMACLine
			if err := dec.Decode(&m); err != nil || dec.More() {
				return l, bad("not the mac line (the header says %d entries)", want)
			}
			mac, err := hex.DecodeString(m.MAC)
			if err != nil || len(mac) != ledgerMACSize || hex.EncodeToString(mac) != m.MAC {
				return l, bad("mac: want 64 lower-case hex digits")
			}
			if err := strict(m); err != nil {
				return l, err
			}
			l.MAC, macDone = mac, true
			continue
		}
		var e ledgerLine
		if err := dec.Decode(&e); err != nil || dec.More() {
			return l, bad("not a ledger entry")
		}
		hash, err := hex.DecodeString(e.Hash)
		if err != nil || len(hash) != 32 || hex.EncodeToString(hash) != e.Hash {
			return l, bad("subject_hash: want 64 lower-case hex digits")
		}
		at, err := time.Parse(time.RFC3339Nano, e.ErasedAt)
		if err != nil || at.Location() != time.UTC || e.ErasedAt[len(e.ErasedAt)-1] != 'Z' || at.Year() < 1970 || at.Year() > 2200 {
			return l, bad("erased_at: want an RFC 3339 UTC time")
		}
		if v2 && at.UTC().Format(time.RFC3339Nano) != e.ErasedAt {
			// The line's bytes are its entry's only spelling (time.Parse
			// also takes, say, a one-digit hour).
			return l, bad("erased_at: not in canonical form")
		}
		if int64(len(l.Entries)) >= want {
			return l, bad("more entries than the header's %d", want)
		}
		if err := strict(e); err != nil {
			return l, err
		}
		l.Entries = append(l.Entries, vault.LedgerEntry{Hash: hash, ErasedAt: at})
	}
	if err := sc.Err(); err != nil {
		return l, fmt.Errorf("%w: %v", ErrLedger, err)
	}
	if want < 0 {
		return l, fmt.Errorf("%w: empty file", ErrLedger)
	}
	if int64(len(l.Entries)) != want {
		return l, fmt.Errorf("%w: %d entries, the header says %d (truncated?)", ErrLedger, len(l.Entries), want)
	}
	if v2 && !macDone {
		return l, fmt.Errorf("%w: no mac line after the %d entries (truncated?)", ErrLedger, want)
	}
	return l, nil
}

// ledgerMACLabel separates the ledger MAC from the other MACs under the
// ledger key (subject hashes, the key id): aead.Key.MAC length-prefixes
// every part, so a different first part never collides.
const ledgerMACLabel = "tokenvault/erasure-ledger/v2 mac"

// LedgerSum accumulates a ledger's MAC entry by entry, in order, so the
// server can authenticate a ledger it streams page by page without
// holding it. The MAC is HMAC-SHA256 under the ledger key of the label,
// the key id, the entry count and the SHA-256 of the entries (each a
// length-prefixed hash and the erasure time in Unix nanoseconds): any
// entry dropped, added, changed or moved changes it.
type LedgerSum struct {
	keyID string
	n     uint64
	h     hash.Hash
}

// NewLedgerSum starts the MAC of a ledger made with the key keyID names.
func NewLedgerSum(keyID string) *LedgerSum {
	return &LedgerSum{keyID: keyID, h: sha256.New()}
}

// Add appends one entry.
func (s *LedgerSum) Add(e vault.LedgerEntry) {
	var b [4 + 32 + 8]byte
	out := binary.BigEndian.AppendUint32(b[:0], uint32(len(e.Hash)))
	out = append(out, e.Hash...)
	out = binary.BigEndian.AppendUint64(out, uint64(e.ErasedAt.UnixNano()))
	s.h.Write(out)
	s.n++
}

// MAC is the MAC of the entries added so far.
func (s *LedgerSum) MAC(key *aead.Key) ([]byte, error) {
	return key.MAC([]byte(ledgerMACLabel), []byte(s.keyID), binary.BigEndian.AppendUint64(nil, s.n), s.h.Sum(nil))
}

// Sum computes the MAC of l under key.
func (l Ledger) Sum(key *aead.Key) ([]byte, error) {
	s := NewLedgerSum(l.KeyID)
	for _, e := range l.Entries {
		s.Add(e)
	}
	return s.MAC(key)
}

// Verify checks l's MAC under key: ErrUnauthenticated when it has none,
// ErrBadMAC when it does not match. Errors name no entry.
func (l Ledger) Verify(key *aead.Key) error {
	if l.MAC == nil {
		return fmt.Errorf("%w: the erasure ledger has no MAC (a %s file, written before tokenvault authenticated ledgers, or sent by an older server)", ErrUnauthenticated, LedgerFormatV1)
	}
	want, err := l.Sum(key)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, l.MAC) {
		return fmt.Errorf("%w: an entry was dropped, added, changed or reordered, or the ledger comes from another vault", ErrBadMAC)
	}
	return nil
}
