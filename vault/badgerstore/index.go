package badgerstore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// The record index (s/) lists the records made under each subject key,
// for export, holds and purges (KeyRecords, PurgeKey). It has one entry
// per run of up to groupMax records of a PutRecords call, not one per
// record. A batch of 100 fields is then 104 memtable inserts instead of
// 200, and the skiplist inserts are the largest share of a batch's CPU
// (BENCHMARKS.md, "One index entry per run of a batch").
//
// A run of one record (a call of one, the last of a call of 32, and
// every entry written before runs shared one, so old data needs no
// migration) is s/<key id><hash of its token> with the empty value. A
// longer run is s/<key id><group id>, listing the hashes of its records
// still held, sorted; its records carry the group id in their encoding
// (encodeRecord), so that deleting one finds its entry. The group id is
// random, not a member's hash: a token can be written again once its
// record is deleted (a deterministic token after its expiry), and the new
// record's entry would then replace a group's entry that still lists
// others.

// groupMax bounds the records of one index entry: its value (32 bytes a
// record) then stays below badger's value threshold (1 KiB, badgerOptions)
// and in the LSM tree, as the one-record entries are, instead of going to
// the value log (and an in-memory store refuses values above it).
const groupMax = 31

// runLen is the length of the run of groupMax that the i-th of n records
// a PutRecords writes falls in.
func runLen(n, i int) int {
	lo := i / groupMax * groupMax
	return min(groupMax, n-lo)
}

// newGroupID fills b with a new random group id and returns it.
func newGroupID(b []byte) []byte {
	rand.Read(b) // never fails (crypto/rand)
	return b
}

// groupMembers returns the record hashes that the index entry keyed by g
// with value val lists (aliasing val): g itself for the empty value.
func groupMembers(g, val []byte) ([][]byte, error) {
	if len(val) == 0 {
		return [][]byte{g}, nil
	}
	if len(val)%sha256.Size != 0 {
		return nil, fmt.Errorf("%w: record index entry of %d bytes", vault.ErrCorrupt, len(val))
	}
	out := make([][]byte, 0, len(val)/sha256.Size)
	for ; len(val) > 0; val = val[sha256.Size:] {
		out = append(out, val[:sha256.Size:sha256.Size])
	}
	return out, nil
}

// appendGroupValue appends the index value of a group of hashes (at
// least two) to b: the hashes, sorted, so that a listing can resume after
// any of them (listCursor). It sorts hashes in place.
func appendGroupValue(b []byte, hashes [][]byte) []byte {
	slices.SortFunc(hashes, bytes.Compare)
	for _, h := range hashes {
		b = append(b, h...)
	}
	return b
}

// dropFromGroup removes hash from the index entry keyed by g under key
// id (g: the record's group id, or its own hash), and the entry once it
// lists no record. A missing entry or member is left alone: deleting a
// record must not fail on an index entry that is not there.
func dropFromGroup(txn *badger.Txn, id vault.KeyID, g, hash []byte) error {
	ik := key(pIndex, id[:], g)
	val, err := get(txn, ik)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	members, err := groupMembers(g, val)
	if err != nil {
		return err
	}
	rest := make([][]byte, 0, len(members))
	for _, m := range members {
		if !bytes.Equal(m, hash) {
			rest = append(rest, m)
		}
	}
	switch {
	case len(rest) == len(members):
		return nil
	case len(rest) == 0:
		return txn.Delete(ik)
	}
	// rest keeps the entry's sorted order.
	b := make([]byte, 0, len(rest)*sha256.Size)
	for _, m := range rest {
		b = append(b, m...)
	}
	return txn.Set(ik, b)
}

// A listing cursor (vault.Record.Cursor) is the hex of the group and the
// hash of the last record listed: the listing resumes at the group's
// entry, after that hash. It stays valid when that record, or its whole
// group, is deleted meanwhile: the seek then lands on what follows. (A
// token alone would not do: a deleted record no longer says its group.)
const cursorLen = 4 * sha256.Size

func listCursor(g, hash []byte) string {
	b := make([]byte, 0, cursorLen)
	return string(hex.AppendEncode(hex.AppendEncode(b, g), hash))
}

var errBadCursor = fmt.Errorf("%w: after: not a listing cursor of this store", vault.ErrInvalidArgument)

func parseCursor(c string) (g, hash []byte, err error) {
	if len(c) != cursorLen {
		return nil, nil, errBadCursor
	}
	b, err := hex.DecodeString(c)
	if err != nil {
		return nil, nil, errBadCursor
	}
	return b[:sha256.Size], b[sha256.Size:], nil
}
