package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// subjectA and subjectB: values with distinctive bytes, so a byte search
// for them in raw files cannot hit by accident. The long generic value
// goes to badger's value log (over its 1 KiB threshold).
var (
	subjectA = []client.Field{
		{Kind: "pan", Value: "4000056655665556"},
		{Kind: "email", Value: "alice.zqxv@example.org", Deterministic: true},
		{Kind: "name", Value: "Alicezqxv Wonderlandqx"},
		{Kind: "generic", Value: "alice-secret-note-" + strings.Repeat("zqxvA", 400)},
	}
	subjectB = []client.Field{
		{Kind: "pan", Value: "5105105105105100"},
		{Kind: "email", Value: "bob.kjwy@example.net", Deterministic: true},
		{Kind: "generic", Value: "bob-secret-note-" + strings.Repeat("kjwyB", 400)},
	}
	blobA = "alice-blob-plaintext-zqxv"
	blobB = "bob-blob-plaintext-kjwy"
)

func values(fs []client.Field) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Value)
	}
	return out
}

// backupTo takes a backup through the generated client.
func backupTo(t *testing.T, c *client.Client, path string, recipient string, since uint64) backup.Header {
	t.Helper()
	res, err := backup.Fetch(ctx(t), c.BackupAdmin(), path, []string{recipient}, since, nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res.Header
}

// decryptFile returns the decrypted payload of a backup file.
func decryptFile(t *testing.T, path string, id age.Identity) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := backup.ReadHeader(f); err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grepDir reports which files under dir contain needle.
func grepDir(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestBackupEraseRestore is the acceptance test: tokenize for A and
// B, back up, erase A, restore the old backup into a fresh directory: A
// stays erased on every API path, B is intact, and no file holds A's
// plaintext or A's wrapped data key.
func TestBackupEraseRestore(t *testing.T) { withEachKEK(t, backupEraseRestore) }

func backupEraseRestore(t *testing.T, e *env) {
	a, c := e.start(t)
	cx := ctx(t)
	tokA, err := c.Tokenize(cx, "subject-a", subjectA...)
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := c.Tokenize(cx, "subject-b", subjectB[:2]...)
	if err != nil {
		t.Fatal(err)
	}
	blobsA, err := c.Encrypt(cx, "subject-a", "orders.note", []byte(blobA))
	if err != nil {
		t.Fatal(err)
	}
	blobsB, err := c.Encrypt(cx, "subject-b", "orders.note", []byte(blobB))
	if err != nil {
		t.Fatal(err)
	}

	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	h1 := backupTo(t, c, full, id.Recipient().String(), 0)
	// More for B after the full backup: it comes back through an
	// incremental backup.
	more, err := c.Tokenize(cx, "subject-b", subjectB[2:]...)
	if err != nil {
		t.Fatal(err)
	}
	tokB = append(tokB, more...)
	inc := filepath.Join(dir, "inc1.tvbak")
	h2 := backupTo(t, c, inc, id.Recipient().String(), h1.Next)
	if h2.Since != h1.Next || h2.Next <= h2.Since {
		t.Fatalf("incremental header %+v after %+v", h2, h1)
	}

	// A's wrapped data key, as the backup holds it.
	var wrappedA, wrappedB []byte
	_, err = badgerstore.ScanPayload(bytes.NewReader(decryptFile(t, full, id)), func(s string, sk vault.SubjectKey) {
		switch s {
		case "subject-a":
			wrappedA = bytes.Clone(sk.Wrapped)
		case "subject-b":
			wrappedB = bytes.Clone(sk.Wrapped)
		}
	}, func(vault.LedgerEntry) {})
	if err != nil || wrappedA == nil || wrappedB == nil {
		t.Fatalf("A's key not in the backup: %v", err)
	}

	_, rc, _ := eraseVerified(t, cx, c, "subject-a")
	if rc.Records != int64(len(subjectA)) {
		t.Fatalf("receipt %+v: want %d records", rc, len(subjectA))
	}
	ledger, err := backup.FetchLedger(cx, c.BackupAdmin())
	if err != nil || len(ledger.Entries) != 1 {
		t.Fatalf("ledger: %d entries, %v", len(ledger.Entries), err)
	}
	if bytes.Contains(ledger.Marshal(), []byte("subject-a")) {
		t.Fatal("the ledger holds the subject id")
	}
	a.Stop()

	// Restore the old backups (taken before the erasure) into a fresh dir.
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(dir, "restored")
	res, err := backup.Restore(context.Background(), backup.RestoreOptions{DataDir: restored,
		Files: []string{full, inc}, Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || res.Dropped == 0 {
		t.Fatalf("restore re-erased %d subjects, dropped %d entries; want 1 and some", res.ReErased, res.Dropped)
	}

	// No plaintext of A anywhere: live data dir after erasure, restored
	// dir, backup files raw and decrypted (values are sealed before they
	// reach the store). B's values are not in plaintext either.
	payloads := t.TempDir()
	os.WriteFile(filepath.Join(payloads, "full.payload"), decryptFile(t, full, id), 0o600)
	os.WriteFile(filepath.Join(payloads, "inc.payload"), decryptFile(t, inc, id), 0o600)
	for _, v := range append(append(values(subjectA), blobA), append(values(subjectB), blobB)...) {
		for _, d := range []string{e.dataDir, restored, dir, payloads} {
			if hits := grepDir(t, d, []byte(v[:min(len(v), 40)])); len(hits) > 0 {
				t.Errorf("plaintext value found in %v", hits)
			}
		}
	}
	// No working key for A in the restored store: the wrapped DEK never
	// reached its files.
	if hits := grepDir(t, restored, wrappedA); len(hits) > 0 {
		t.Errorf("A's wrapped data key is in the restored files %v", hits)
	}
	// Controls: the searches do find what is stored (B's key, subject ids).
	if len(grepDir(t, restored, wrappedB)) == 0 || len(grepDir(t, restored, []byte("subject-b"))) == 0 ||
		len(grepDir(t, payloads, []byte("subject-b"))) == 0 {
		t.Fatal("control: the byte search does not find B's wrapped key or id in the restored files")
	}
	if len(grepDir(t, restored, []byte("subject-a"))) != 0 {
		t.Error("A's subject id is in the restored files")
	}
	st, err := badgerstore.Open(restored, badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SubjectKey(cx, "subject-a"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("A's key in the restored store: %v", err)
	}
	if l, _ := st.LedgerEntries(cx, nil, 10); len(l) != 1 {
		t.Fatalf("restored store's ledger has %d entries, want 1", len(l))
	}
	st.Close()

	// Serve the restored directory with the same KEK.
	e2 := *e
	e2.dataDir = restored
	_, c2 := e2.start(t)
	det, err := c2.Detokenize(cx, "audit", tokA...)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range det {
		wantCode(t, d.Err, codes.NotFound, "")
		_ = i
	}
	masks, _ := c2.Mask(cx, tokA...)
	for _, m := range masks {
		wantCode(t, m.Err, codes.NotFound, "")
	}
	dec, _ := c2.Decrypt(cx, "audit", "orders.note", blobsA[0])
	wantCode(t, dec[0].Err, codes.NotFound, "erased")
	_, err = c2.ExportSubject(cx, "subject-a", "dsar")
	wantCode(t, err, codes.NotFound, "subject_id")
	_, err = c2.EraseSubject(cx, "subject-a")
	wantCode(t, err, codes.NotFound, "subject_id")
	_, err = c2.Restrict(cx, "subject-a")
	wantCode(t, err, codes.NotFound, "subject_id")
	_, err = c2.Rectify(cx, tokA[0], "4111111111111111")
	wantCode(t, err, codes.NotFound, "token")
	// A deterministic tokenize of A's email starts a new subject key: a new
	// token, not the erased one.
	again, err := c2.Tokenize(cx, "subject-a", subjectA[1])
	if err != nil || again[0] == tokA[1] {
		t.Fatalf("deterministic tokenize after restore returned the erased token (%v)", err)
	}

	// B is intact, including what only the incremental backup had.
	det, err = c2.Detokenize(cx, "audit", tokB...)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range det {
		if d.Err != nil || d.Value != normalized(t, subjectB[i].Kind, subjectB[i].Value) {
			t.Fatalf("B's token %d after restore: %q %v", i, d.Value, d.Err)
		}
	}
	dec, _ = c2.Decrypt(cx, "audit", "orders.note", blobsB[0])
	if dec[0].Err != nil || dec[0].Value != blobB {
		t.Fatalf("B's blob after restore: %v", dec[0].Err)
	}
	ex, err := c2.ExportSubject(cx, "subject-b", "dsar")
	if err != nil || len(ex.Tokens) != len(subjectB) {
		t.Fatalf("B's export after restore: %d tokens, %v", len(ex.Tokens), err)
	}
}

// TestRestoreBadInput: every bad input gets a clear error and changes
// nothing.
func TestRestoreBadInput(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	if _, err := c.Tokenize(cx, "subject-a", subjectA...); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tokenize(cx, "subject-b", subjectB...); err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	h := backupTo(t, c, full, id.Recipient().String(), 0)
	if _, err := c.Tokenize(cx, "subject-b", client.Field{Kind: "name", Value: "Bob"}); err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(dir, "inc.tvbak")
	h2 := backupTo(t, c, inc, id.Recipient().String(), h.Next)
	if _, err := c.Tokenize(cx, "subject-b", client.Field{Kind: "name", Value: "Robert"}); err != nil {
		t.Fatal(err)
	}
	inc2 := filepath.Join(dir, "inc2.tvbak")
	backupTo(t, c, inc2, id.Recipient().String(), h2.Next)
	if _, err := c.EraseSubject(cx, "subject-a"); err != nil {
		t.Fatal(err)
	}
	ledger, err := backup.FetchLedger(cx, c.BackupAdmin())
	if err != nil {
		t.Fatal(err)
	}

	// Bad requests to the Backup RPC.
	_, err = backup.Fetch(cx, c.BackupAdmin(), filepath.Join(dir, "x"), []string{"age1notakey"}, 0, nil)
	if err == nil || !strings.Contains(err.Error(), "recipients[0]") {
		t.Fatalf("backup to a bad recipient: %v", err)
	}
	stream, _ := c.BackupAdmin().Backup(cx, &pb.BackupRequest{})
	_, err = stream.Recv()
	wantCode(t, err, codes.InvalidArgument, "recipients")
	if _, err := backup.Fetch(cx, c.BackupAdmin(), full, []string{id.Recipient().String()}, 0, nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	a.Stop()

	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(full)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	badHeader := bytes.Clone(good)
	copy(badHeader[backup.NextOffset:], backup.NextLine(h.Next+7))
	otherKey, _, _ := keyfile.LoadOrCreateLedgerKey(filepath.Join(dir, "other.key"), true)
	nonEmpty := filepath.Join(dir, "nonempty")
	os.MkdirAll(nonEmpty, 0o700)
	keep := filepath.Join(nonEmpty, "precious.txt")
	os.WriteFile(keep, []byte("do not touch"), 0o600)

	for name, tc := range map[string]struct {
		files   []string
		ids     []age.Identity
		key     bool // use another ledger key
		dataDir string
		want    string
	}{
		"non-empty data dir":  {files: []string{full}, dataDir: nonEmpty, want: "not empty"},
		"wrong identity":      {files: []string{full}, ids: []age.Identity{other}, want: "cannot decrypt"},
		"truncated":           {files: []string{write("trunc", good[:len(good)-100])}, want: "truncated"},
		"truncated in header": {files: []string{write("trunc2", good[:20])}, want: "not a tokenvault backup"},
		"corrupted byte":      {files: []string{write("flip", flipped)}, want: "corrupted"},
		"altered header":      {files: []string{write("hdr", badHeader)}, want: "does not match"},
		"not a backup":        {files: []string{write("junk", []byte(strings.Repeat("junk\n", 100)))}, want: "not a tokenvault backup"},
		"incremental first":   {files: []string{inc}, want: "full backup"},
		"out of order":        {files: []string{full, inc2, inc}, want: "order"},
		"wrong ledger key":    {files: []string{full}, key: true, want: "ledger key"},
		"missing file":        {files: []string{filepath.Join(dir, "nope")}, want: "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			ids := tc.ids
			if ids == nil {
				ids = []age.Identity{id}
			}
			k := lk
			if tc.key {
				k = otherKey
			}
			target := tc.dataDir
			if target == "" {
				target = filepath.Join(t.TempDir(), "restored")
			}
			_, err := backup.Restore(context.Background(), backup.RestoreOptions{DataDir: target, Files: tc.files,
				Identities: ids, LedgerKey: k, Ledger: ledger})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want an error mentioning %q", err, tc.want)
			}
			if tc.dataDir == "" {
				if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
					t.Fatal("a failed restore left the data directory behind")
				}
				if left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".restored.restoring-*")); len(left) > 0 {
					t.Fatalf("a failed restore left %v behind", left)
				}
			}
		})
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "do not touch" {
		t.Fatal("the non-empty data directory was changed")
	}
	if ents, _ := os.ReadDir(nonEmpty); len(ents) != 1 {
		t.Fatalf("the non-empty data directory now has %d entries", len(ents))
	}
	// The live data directory still serves.
	_, c2 := e.start(t)
	if ex, err := c2.ExportSubject(cx, "subject-b", "dsar"); err != nil || len(ex.Tokens) != len(subjectB)+2 {
		t.Fatalf("live vault after failed restores: %v", err)
	}
}
