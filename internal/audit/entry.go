// Package audit is tokenvault's tamper-evident audit log: one JSON object
// per line, each chained by SHA-256 to the previous one, with periodic
// checkpoints signed with Ed25519.
//
// # Format
//
// A line is a JSON object whose last member is "hash":
//
//	{"seq":7,"time":"…","type":"call",…,"prev":"<hex>","hash":"<hex>"}
//
// hash is SHA-256 over the exact bytes of the line without its
// `,"hash":"…"` member (that is, the object closed right after "prev"), and
// prev is the hash of the line before (64 zeros for the first line). So an
// edited line no longer matches its hash, and a removed, inserted or
// reordered line breaks prev and seq. Lines must be in canonical form (what
// [Entry.Line] writes); the parser re-encodes and compares, so two
// spellings of one entry cannot both verify.
//
// A checkpoint line (type "checkpoint") carries an Ed25519 signature over
// its seq, time and prev. Someone who can write the file could rewrite the
// whole chain after an edit; they cannot forge the signature without the
// signing key, so every entry up to the last checkpoint is protected. See
// [Verify] for what is and is not detected.
//
// Entries never hold values: tokens are recorded as keyed hashes
// ([Log.TokenHash]); subject ids, purposes, contexts and caller names are
// recorded as they are.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Entry types.
const (
	TypeCall       = "call"
	TypeCheckpoint = "checkpoint"
	// TypeRefusals stands for Count refused calls alike in method,
	// outcome, caller and peer, counted instead of written one by one when
	// refusals come faster than the guard audits them individually (a
	// flood must not be able to fill the disk or starve the audit of
	// reveals).
	TypeRefusals = "refusals"
	// TypeNotice records an event of the log itself (an operator allowed
	// the server to continue an unverifiable history).
	TypeNotice = "notice"
	// TypeContinue is the first entry of a file that continues the chain
	// of a rotated file (File names it, Prev is its last entry's hash,
	// CheckpointSeq its closing checkpoint): see rotate.go.
	TypeContinue = "continue"
)

// Ops of the log's own entries.
const (
	OpRotate    = "audit-rotate"
	OpRetention = "audit-retention"
)

// Entry is one audit record. The writer sets Seq, Time, Prev and Hash.
type Entry struct {
	Seq  uint64 `json:"seq"`
	Time string `json:"time"` // RFC 3339, UTC, set by the writer
	Type string `json:"type"`
	// Replica: the server that wrote the entry (Options.Replica), so that
	// trails of several replicas can be merged.
	Replica string `json:"replica,omitempty"`
	// Caller: the identity (certificate URI/DNS name, "api_key:NAME", or
	// "anonymous" in dev mode); Auth: how it was established.
	Caller string `json:"caller,omitempty"`
	Auth   string `json:"auth,omitempty"`
	Peer   string `json:"peer,omitempty"` // network address of the caller
	Op     string `json:"op,omitempty"`
	Method string `json:"method,omitempty"` // the gRPC method
	// Purpose of a reveal, as the caller stated it.
	Purpose string `json:"purpose,omitempty"`
	// OriginCaller and OriginReplica: a reveal another replica forwarded
	// to the one holding the token (volatile tokens): the caller of the
	// original call, as the forwarding replica (its replica.id)
	// authenticated it. Caller is then the forwarding replica's identity.
	OriginCaller  string `json:"origin_caller,omitempty"`
	OriginReplica string `json:"origin_replica,omitempty"`
	// Subject: the subject id, in entries written before subjects were
	// hashed (and by a Log without Options.SubjectHash); SubjectHash: its
	// keyed hash (subject.go).
	Subject     string `json:"subject,omitempty"`
	SubjectHash string `json:"subject_hash,omitempty"`
	// Outcome is the gRPC code name of the call ("OK", "PermissionDenied",
	// …); Reason says why a call was refused.
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Kind: the kind of every item, when they share one (compact.go).
	Kind         string `json:"kind,omitempty"`
	Items        []Item `json:"items,omitempty"`
	ItemsOmitted int    `json:"items_omitted,omitempty"` // items beyond MaxItems
	// Count: refusals entries only, how many calls the entry stands for;
	// Since: when the first of them was refused.
	Count uint64 `json:"count,omitempty"`
	Since string `json:"since,omitempty"`
	// Recipients: backups only, the age recipients the backup was
	// encrypted to (who can read it).
	Recipients []string `json:"recipients,omitempty"`
	// File: continue entries, the rotated file this one continues;
	// retention notices, the rotated file deleted. CheckpointSeq: continue
	// entries only, the seq of that file's closing checkpoint.
	File          string `json:"file,omitempty"`
	CheckpointSeq uint64 `json:"cp_seq,omitempty"`
	// Checkpoints only: the signing key's id and the signature.
	KeyID string `json:"key_id,omitempty"`
	Sig   string `json:"sig,omitempty"`
	Prev  string `json:"prev"`
	Hash  string `json:"-"`
}

// Item is the outcome for one token or blob of a batch.
type Item struct {
	Token       string `json:"token,omitempty"` // keyed hash of the token, never the token
	Kind        string `json:"kind,omitempty"`
	Subject     string `json:"subject,omitempty"`
	SubjectHash string `json:"subject_hash,omitempty"`
	Context     string `json:"context,omitempty"`
	// Outcome: "" is the entry's outcome (compact.go).
	Outcome string `json:"outcome,omitempty"`
}

// Limits on what one entry records, so that a huge (refused) request
// cannot blow up the log.
const (
	MaxItems = 1000
	// MaxField bounds each string field; longer ones are cut (marked with
	// "…").
	MaxField = 512
	// MaxLine bounds a line when reading.
	MaxLine = 4 << 20
)

// ZeroHash is prev of the first entry.
var ZeroHash = strings.Repeat("0", 64)

// ErrFormat is wrapped by line parse errors.
var ErrFormat = errors.New("malformed audit line")

const hashSuffix = `,"hash":"`

// body is the canonical JSON of e without the hash.
func (e *Entry) body() ([]byte, error) {
	var b bytes.Buffer
	if err := e.appendBody(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// appendBody appends the canonical JSON of e without the hash to b.
func (e *Entry) appendBody(b *bytes.Buffer) error { return e.appendBodyAs(b, e.plain()) }

// appendBodyAs is appendBody for a caller that has asked e.plain()
// already (the check walks every string of the entry).
func (e *Entry) appendBodyAs(b *bytes.Buffer, plain bool) error {
	if plain {
		b.Write(e.appendPlain(b.AvailableBuffer()))
		return nil
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// sanitize replaces invalid UTF-8 (request fields are not validated
// before a refusal is audited): JSON would turn it into U+FFFD anyway, and
// doing it first keeps the written line canonical.
func (e *Entry) sanitize() {
	for _, p := range []*string{&e.Time, &e.Type, &e.Replica, &e.Caller, &e.Auth, &e.Peer, &e.Op, &e.Method,
		&e.Purpose, &e.OriginCaller, &e.OriginReplica, &e.Subject, &e.SubjectHash, &e.Outcome, &e.Reason, &e.Kind, &e.Since, &e.File, &e.KeyID, &e.Sig, &e.Prev} {
		*p = strings.ToValidUTF8(*p, "\uFFFD")
	}
	for i := range e.Recipients {
		e.Recipients[i] = strings.ToValidUTF8(e.Recipients[i], "\uFFFD")
	}
	for i := range e.Items {
		it := &e.Items[i]
		for _, p := range []*string{&it.Token, &it.Kind, &it.Subject, &it.SubjectHash, &it.Context, &it.Outcome} {
			*p = strings.ToValidUTF8(*p, "\uFFFD")
		}
	}
}

// Line returns the sealed entry as one line, newline included.
func (e *Entry) Line() ([]byte, error) {
	var b bytes.Buffer
	if err := e.appendLine(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// appendLine seals e and appends its line to b (the writer appends a
// whole group to one buffer: this runs for every audited call). On error
// b is left as it was.
func (e *Entry) appendLine(b *bytes.Buffer) error {
	// A plain entry is valid UTF-8 already; sanitizing one that is not
	// leaves it not plain (U+FFFD is not ASCII), so one check serves both.
	plain := e.plain()
	if !plain {
		e.sanitize()
	}
	start := b.Len()
	if err := e.appendBodyAs(b, plain); err != nil {
		b.Truncate(start)
		return err
	}
	sum := sha256.Sum256(b.Bytes()[start:])
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:]) // one allocation (the string) instead of EncodeToString's two
	e.Hash = string(h[:])
	b.Truncate(b.Len() - 1) // the body's closing brace
	b.WriteString(hashSuffix)
	b.Write(h[:])
	b.WriteString("\"}\n")
	return nil
}

// ParseLine parses one line (with or without its newline), checks that
// it is canonical and that its hash matches its content. It does not check
// the chain (see Verify).
func ParseLine(line []byte) (Entry, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	i := bytes.LastIndex(line, []byte(hashSuffix))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) || len(line)-i != len(hashSuffix)+64+2 {
		return Entry{}, fmt.Errorf("%w: does not end with the entry hash", ErrFormat)
	}
	hash := string(line[i+len(hashSuffix) : len(line)-2])
	if _, err := hex.DecodeString(hash); err != nil || strings.ToLower(hash) != hash {
		return Entry{}, fmt.Errorf("%w: hash is not lowercase hex", ErrFormat)
	}
	body := append(bytes.Clone(line[:i]), '}')
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	canon, err := e.body()
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if !bytes.Equal(canon, body) {
		return Entry{}, fmt.Errorf("%w: not in canonical form (edited?)", ErrFormat)
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != hash {
		return Entry{}, fmt.Errorf("%w: entry hash does not match its content (edited)", ErrFormat)
	}
	e.Hash = hash
	return e, nil
}

// checkpointMessage is what a checkpoint's signature covers: its place in
// the chain (seq, prev) and its time.
func checkpointMessage(e *Entry) []byte {
	return []byte("tokenvault audit checkpoint v1\n" + strconv.FormatUint(e.Seq, 10) + "\n" + e.Time + "\n" + e.Prev + "\n")
}

// Clip cuts s to MaxField bytes (at a rune boundary) so that no caller
// controlled field makes an entry arbitrarily large.
func Clip(s string) string {
	if len(s) <= MaxField {
		return s
	}
	cut := MaxField
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
