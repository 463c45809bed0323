package backup

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// Erasure-ledger files (`tokenvault ledger export`): JSON lines. The first
// line is the header, then one line per erased subject:
//
//	{"format":"tokenvault-erasure-ledger/v1","ledger_key_id":"0123456789abcdef","entries":2}
//	{"subject_hash":"<64 hex digits>","erased_at":"2025-01-02T03:04:05.000000006Z"}
//	...
//
// Hashes are HMAC-SHA256 of subject ids under the vault's ledger key, so
// the file does not reveal who was erased. ledger_key_id fingerprints that
// key: a restore refuses a ledger made with another key (every hash would
// silently miss). entries makes a truncated file an error.

// LedgerFormat names version 1 of the ledger file.
const LedgerFormat = "tokenvault-erasure-ledger/v1"

// ErrLedger: the ledger file is malformed or truncated.
var ErrLedger = errors.New("erasure ledger file is malformed")

// maxLedgerLine bounds one line of a ledger file.
const maxLedgerLine = 1 << 10

// Ledger is an erasure ledger and the key id it was made with.
type Ledger struct {
	KeyID   string
	Entries []vault.LedgerEntry
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

// Marshal encodes the ledger file.
func (l Ledger) Marshal() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Encoding these plain structs cannot fail.
	_ = enc.Encode(ledgerHeader{Format: LedgerFormat, KeyID: l.KeyID, Entries: int64(len(l.Entries))})
	for _, e := range l.Entries {
		_ = enc.Encode(ledgerLine{Hash: hex.EncodeToString(e.Hash), ErasedAt: e.ErasedAt.UTC().Format(time.RFC3339Nano)})
	}
	return b.Bytes()
}

// ParseLedger decodes a ledger file strictly.
func ParseLedger(r io.Reader) (Ledger, error) {
	var l Ledger
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, maxLedgerLine), maxLedgerLine)
	line := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrLedger, line, fmt.Sprintf(format, args...))
	}
	var h ledgerHeader
	want := int64(-1)
	for sc.Scan() {
		line++
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if want < 0 {
			if err := dec.Decode(&h); err != nil || dec.More() {
				return l, bad("not a ledger header")
			}
			if h.Format != LedgerFormat {
				return l, bad("format is not %q", LedgerFormat)
			}
			if k, err := hex.DecodeString(h.KeyID); err != nil || len(k) != 8 || hex.EncodeToString(k) != h.KeyID {
				return l, bad("ledger_key_id: want 16 lower-case hex digits")
			}
			if h.Entries < 0 {
				return l, bad("negative entry count")
			}
			l.KeyID, want = h.KeyID, h.Entries
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
		if int64(len(l.Entries)) >= want {
			return l, bad("more entries than the header's %d", want)
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
	return l, nil
}
