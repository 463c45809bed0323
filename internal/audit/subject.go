package audit

import (
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// Subjects in the log.
//
// Entries name a subject by a keyed hash, never by its id: an id in the
// clear would outlive the subject's erasure in every rotated, shipped and
// backed-up copy of the log (the store hashes ids for the same reason,
// vault.StoreSubjectHash). The key is derived from the vault's ledger key
// under a label of its own, so the hash is the same on every replica of
// a vault (trails can be merged), differs from the store's hash (a log
// line cannot be matched against store keys), and only holders of the
// ledger key can tell which subject an entry is about (tokenvault audit
// grep --subject, the console's Trail).
//
// Entries written before this (field "subject") keep their clear id and
// still verify: the hash is a new field ("subject_hash").

// subjectHashLabel: HKDF label of the subject-hash key.
const subjectHashLabel = "tokenvault/audit/subject-id/v1"

// SubjectHasher computes the keyed hashes that stand for subject ids.
type SubjectHasher struct {
	key *aead.Key // derived; zeroed by Zero
}

// NewSubjectHasher derives the subject-hash key from the ledger key (the
// caller keeps and zeroes the ledger key; Zero zeroes the derived one).
func NewSubjectHasher(ledgerKey *aead.Key) (*SubjectHasher, error) {
	k, err := ledgerKey.Derive(subjectHashLabel)
	if err != nil {
		return nil, fmt.Errorf("audit subject hash key: %w", err)
	}
	return &SubjectHasher{key: k}, nil
}

// Hash returns the first 128 bits of HMAC-SHA256 of the subject id (cut
// to MaxField like every field, so that the hash of an id matches its
// entries whatever its length), in hex. It fails only after Zero.
func (h *SubjectHasher) Hash(subject string) (string, error) {
	mac, err := h.key.MAC([]byte(Clip(subject)))
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(mac[:16]), nil
}

// Zero zeroes the key.
func (h *SubjectHasher) Zero() { h.key.Zero() }

// hashSubjects replaces the subject ids of e by their keyed hashes (when
// the log has a hasher: Options.SubjectHash).
func (l *Log) hashSubjects(e *Entry) error {
	h := l.opts.SubjectHash
	if h == nil {
		return nil
	}
	var err error
	if e.Subject != "" {
		if e.SubjectHash, err = h(e.Subject); err != nil {
			return fmt.Errorf("%w: hashing the subject: %v", ErrUnavailable, err)
		}
		e.Subject = ""
	}
	if slices.ContainsFunc(e.Items, func(it Item) bool { return it.Subject != "" }) {
		e.Items = slices.Clone(e.Items) // the caller's slice stays as it was
	}
	for i := range e.Items {
		it := &e.Items[i]
		if it.Subject == "" {
			continue
		}
		if i == 0 || it.Subject != e.Items[i-1].Subject {
			// (a batch usually repeats one subject: hash it once)
			if it.SubjectHash, err = h(it.Subject); err != nil {
				return fmt.Errorf("%w: hashing the subject: %v", ErrUnavailable, err)
			}
		} else {
			it.SubjectHash = e.Items[i-1].SubjectHash
		}
		it.Subject = ""
	}
	return nil
}

// TrailEntry is an entry of a subject's trail and the file it is in.
type TrailEntry struct {
	File  string
	Entry Entry
}

// Trail returns the entries of the log in dir (rotated files and the
// current one) that name the subject whose keyed hash is subjectHash
// (SubjectHasher.Hash), in the entry or in one of its items, oldest
// first: the newest limit of them (limit <= 0: all). For a privacy
// console: who revealed what of the subject, when, and why. It reads but
// does not verify the files (VerifyDir does); entries written before
// subjects were hashed are found by TrailByID.
func Trail(dir, subjectHash string, limit int) ([]TrailEntry, error) {
	return trail(dir, limit, func(e *Entry) bool { return mentions(e, subjectHash, "") })
}

// TrailByID is Trail for a subject id: it hashes the id with h and also
// finds the entries that name the id in the clear (written before
// subjects were hashed).
func TrailByID(dir string, h *SubjectHasher, subjectID string, limit int) ([]TrailEntry, error) {
	hash, err := h.Hash(subjectID)
	if err != nil {
		return nil, err
	}
	id := Clip(subjectID)
	return trail(dir, limit, func(e *Entry) bool { return mentions(e, hash, id) })
}

func mentions(e *Entry, hash, id string) bool {
	match := func(h, s string) bool { return h != "" && h == hash || id != "" && s == id }
	if match(e.SubjectHash, e.Subject) {
		return true
	}
	for _, it := range e.Items {
		if match(it.SubjectHash, it.Subject) {
			return true
		}
	}
	return false
}

func trail(dir string, limit int, match func(*Entry) bool) ([]TrailEntry, error) {
	var out []TrailEntry
	err := Scan(dir, func(file string, e Entry) bool {
		if match(&e) {
			if limit > 0 && len(out) == limit {
				out = append(out[:0], out[1:]...) // keep the newest
			}
			out = append(out, TrailEntry{File: file, Entry: e})
		}
		return true
	})
	return out, err
}
