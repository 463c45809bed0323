package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fullEntry is an entry as the guard makes it (and as earlier versions
// wrote it).
func fullEntry() Entry {
	return Entry{Caller: "spiffe://example.org/payments", Auth: "mtls", Peer: "10.1.2.3:51234", Op: "detokenize",
		Method: "/tokenvault.v1.TokenVault/Detokenize", Purpose: "payment", Subject: "cust-1", Outcome: "OK",
		Items: []Item{{Token: "00112233445566778899aabbccddeeff", Kind: "pan", Outcome: "OK"},
			{Token: "ffeeddccbbaa99887766554433221100", Kind: "pan", Outcome: "OK"}}}
}

// Entries in the form earlier versions wrote (full method, peer port,
// each item's outcome and kind, clear subject) still parse and verify,
// alone and as a directory.
func TestFullFormStillVerifies(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	var b bytes.Buffer
	prev := ZeroHash
	add := func(e Entry) {
		e.Prev = prev
		if err := e.appendLine(&b); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	add(Entry{Seq: 1, Time: "2026-01-01T00:00:00.123456789Z", Type: TypeCheckpoint, KeyID: KeyID(key.Public().(ed25519.PublicKey)),
		Sig: base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, checkpointMessage(&Entry{Seq: 1, Time: "2026-01-01T00:00:00.123456789Z", Prev: ZeroHash})))})
	e := fullEntry()
	e.Seq, e.Time, e.Type = 2, "2026-01-01T00:00:01.123456789Z", TypeCall
	add(e)
	cp := Entry{Seq: 3, Time: "2026-01-01T00:00:02Z", Type: TypeCheckpoint, KeyID: KeyID(key.Public().(ed25519.PublicKey)), Prev: prev}
	cp.Sig = base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, checkpointMessage(&cp)))
	add(cp)
	if !bytes.Contains(b.Bytes(), []byte(`"peer":"10.1.2.3:51234","op":"detokenize","method":"/tokenvault.v1.TokenVault/Detokenize"`)) ||
		!bytes.Contains(b.Bytes(), []byte(`"kind":"pan","outcome":"OK"}`)) {
		t.Fatalf("not the full form:\n%s", b.Bytes())
	}
	if _, err := Verify(bytes.NewReader(b.Bytes()), key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "audit.jsonl"), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(dir, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// And the writer continues such a log.
	l, err := Open(Options{Path: filepath.Join(dir, "audit.jsonl"), SigningKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), fullEntry()); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := VerifyDir(dir, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
}

// The writer's compact form reads back, expanded, as the entry the guard
// made (but for the peer's port), and is smaller.
func TestCompactExpanded(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Entry)
	}{
		{"same kind and outcome", func(*Entry) {}},
		{"one item refused", func(e *Entry) { e.Items[1].Kind, e.Items[1].Outcome = "", "PermissionDenied" }},
		{"kinds differ", func(e *Entry) { e.Items[1].Kind = "email" }},
		{"one item", func(e *Entry) { e.Items = e.Items[:1] }},
		{"no items, unknown method", func(e *Entry) { e.Items, e.Method = nil, "/other.Service/M" }},
		{"peer without port", func(e *Entry) { e.Peer = "@" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fullEntry()
			tc.mod(&e)
			orig := e
			orig.Items = append([]Item(nil), e.Items...)
			c := e
			compact(&c)
			if !reflect.DeepEqual(e, orig) {
				t.Fatal("compact changed the caller's entry")
			}
			full, _ := e.Line()
			short, _ := c.Line()
			if len(short) >= len(full) && tc.name != "peer without port" {
				t.Errorf("compact form %d bytes, full %d", len(short), len(full))
			}
			p, err := ParseLine(short)
			if err != nil {
				t.Fatal(err)
			}
			got := p.Expanded()
			want := orig
			if tc.name != "peer without port" {
				want.Peer = "10.1.2.3"
			}
			got.Hash, got.Prev, want.Prev = "", "", ""
			if len(want.Items) == 0 {
				got.Items, want.Items = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("expanded\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}
