package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/testfs"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/receipt"
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

// intoBadger restores into a badger data directory, as the restore
// command does.
var intoBadger = backup.OpenerOf(badgerstore.NewLoader)

// backupTo takes a backup through the generated client.
func backupTo(t *testing.T, c *client.Client, path string, recipient string, since uint64) backup.Header {
	t.Helper()
	res, err := backup.Fetch(ctx(t), c, path, []string{recipient}, since, nil)
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
func grepDir(t *testing.T, dir string, needle []byte) []string { return testfs.Grep(t, dir, needle) }

// TestBackupEraseRestore is the acceptance test: tokenize for A and
// B, back up, erase A, restore the old backup into a fresh directory: A
// stays erased on every API path, B is intact, and no file holds A's
// plaintext or A's wrapped data key.
func TestBackupEraseRestore(t *testing.T) { withEachKEKOnBadger(t, backupEraseRestore) }

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
	pub, err := c.ReceiptPublicKey(cx)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := backup.HeaderOf(full); err != nil || !h.Signed() || h.KeyID != receipt.KeyID(pub) {
		t.Fatalf("backup header %+v (%v): want one signed by the vault's key %s", h, err, receipt.KeyID(pub))
	}
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
	// (Subject ids in it are sealed under a key derived from the ledger key.)
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	var wrappedA, wrappedB []byte
	_, err = backup.ReadPayload(bytes.NewReader(decryptFile(t, full, id)), func(frame []byte) error {
		return badgerstore.ScanFrame(lk, frame, func(s string, sk vault.SubjectKey) {
			switch s {
			case "subject-a":
				wrappedA = bytes.Clone(sk.Wrapped)
			case "subject-b":
				wrappedB = bytes.Clone(sk.Wrapped)
			}
		}, func(vault.LedgerEntry) {})
	})
	if err != nil || wrappedA == nil || wrappedB == nil {
		t.Fatalf("A's key not in the backup: %v", err)
	}

	_, rc, _ := eraseVerified(t, cx, c, "subject-a")
	if rc.Records != int64(len(subjectA)) {
		t.Fatalf("receipt %+v: want %d records", rc, len(subjectA))
	}
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil || len(ledger.Entries) != 1 {
		t.Fatalf("ledger: %d entries, %v", len(ledger.Entries), err)
	}
	if bytes.Contains(ledger.Marshal(), []byte("subject-a")) {
		t.Fatal("the ledger holds the subject id")
	}
	a.Stop()
	// Through the ledger file, as `tokenvault ledger export` writes it.
	ledgerFile := filepath.Join(dir, "ledger.jsonl")
	if err := backup.WriteLedger(ledgerFile, ledger); err != nil {
		t.Fatal(err)
	}
	if ledger, err = backup.ReadLedger(ledgerFile); err != nil || ledger.MAC == nil {
		t.Fatalf("ledger file: MAC %x, %v", ledger.MAC, err)
	}

	// Restore the old backups (taken before the erasure) into a fresh dir.
	restored := filepath.Join(dir, "restored")
	// The verification key as restore finds it by default: the public
	// half of the vault's signing key file.
	vk, err := backup.LoadVerifyKey(filepath.Join(e.keysDir, "receipt-signing.pem"))
	if err != nil || !vk.Equal(pub) {
		t.Fatalf("verify key from the signing key file: %v", err)
	}
	res, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: restored,
		Files: []string{full, inc}, Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger,
		LedgerSource: ledgerFile, VerifyKey: vk})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unauthenticated) != 0 {
		t.Fatalf("restore accepted unauthenticated files %v", res.Unauthenticated)
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
	// Control: the search does find what is stored (B's wrapped key).
	if len(grepDir(t, restored, wrappedB)) == 0 {
		t.Fatal("control: the byte search does not find B's wrapped key in the restored files")
	}
	// No subject id in the clear anywhere (store layout 2), erased or not.
	for _, subj := range []string{"subject-a", "subject-b"} {
		for _, d := range []string{e.dataDir, restored, dir, payloads} {
			if hits := grepDir(t, d, []byte(subj)); len(hits) > 0 {
				t.Errorf("%s's subject id is in %v", subj, hits)
			}
		}
	}
	st, err := badgerstore.Open(restored, badgerstore.Options{IDKey: lk}, nil)
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
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil {
		t.Fatal(err)
	}

	// Bad requests to the Backup RPC.
	_, err = backup.Fetch(cx, c, filepath.Join(dir, "x"), []string{"age1notakey"}, 0, nil)
	if err == nil || !strings.Contains(err.Error(), "recipients[0]") {
		t.Fatalf("backup to a bad recipient: %v", err)
	}
	stream, _ := c.BackupAdmin().Backup(cx, &pb.BackupRequest{})
	_, err = stream.Recv()
	wantCode(t, err, codes.InvalidArgument, "recipients")
	if _, err := backup.Fetch(cx, c, full, []string{id.Recipient().String()}, 0, nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	a.Stop()

	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	vk := verifyKey(t, e)
	otherVK, _, _ := ed25519.GenerateKey(nil)
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
		vk      ed25519.PublicKey
		dataDir string
		want    string
	}{
		"non-empty data dir":  {files: []string{full}, dataDir: nonEmpty, want: "not empty"},
		"wrong identity":      {files: []string{full}, ids: []age.Identity{other}, want: "cannot decrypt"},
		"truncated":           {files: []string{write("trunc", good[:len(good)-100])}, want: "truncated"},
		"truncated in header": {files: []string{write("trunc2", good[:20])}, want: "not a tokenvault backup"},
		"corrupted byte":      {files: []string{write("flip", flipped)}, want: "signature does not verify"},
		"altered header":      {files: []string{write("hdr", badHeader)}, want: "signature does not verify"},
		"other verify key":    {files: []string{full}, vk: otherVK, want: "signed by key"},
		"no verify key":       {files: []string{full}, vk: ed25519.PublicKey{}, want: "no key to verify"},
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
			v := vk
			if tc.vk != nil {
				v = tc.vk
			}
			_, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: target, Files: tc.files,
				Identities: ids, LedgerKey: k, Ledger: ledger, VerifyKey: v})
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

// verifyKey is the vault's backup verification key, as restore finds it
// by default (the public half of its signing key file).
func verifyKey(t *testing.T, e *env) ed25519.PublicKey {
	t.Helper()
	vk, err := backup.LoadVerifyKey(filepath.Join(e.keysDir, "receipt-signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return vk
}

// refused checks that a restore failed with want (errors.Is), named
// name, left no directory behind and printed no subject id.
func refused(t *testing.T, err error, want error, name, target string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("Restore = %v, want %v", err, want)
	}
	t.Logf("refused: %v", err)
	if !strings.Contains(err.Error(), name) {
		t.Fatalf("the error %q does not name %s", err, name)
	}
	for _, s := range []string{"subject-a", "subject-b", "subject-c"} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the error names a subject: %v", err)
		}
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused restore left the data directory behind")
	}
}

// TestRestoreRefusesTamperedLedger: security review finding 4. The ledger
// file is authenticated under the ledger key: dropping an entry (which
// would bring that erased subject back), adding, changing or reordering
// one, or cutting the file is refused, even with the legacy flag, and the
// errors name the file but no subject.
func TestRestoreRefusesTamperedLedger(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	for _, s := range []string{"subject-a", "subject-b", "subject-c"} {
		if _, err := c.Tokenize(cx, s, client.Field{Kind: "email", Value: s + "@example.org"}); err != nil {
			t.Fatal(err)
		}
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	backupTo(t, c, full, id.Recipient().String(), 0)
	for _, s := range []string{"subject-a", "subject-c"} {
		if _, err := c.EraseSubject(cx, s); err != nil {
			t.Fatal(err)
		}
	}
	fetched, err := backup.FetchLedger(cx, c)
	if err != nil || len(fetched.Entries) != 2 {
		t.Fatalf("ledger: %d entries, %v", len(fetched.Entries), err)
	}
	a.Stop()
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	vk := verifyKey(t, e)
	good := fetched.Marshal()
	lines := bytes.SplitAfter(good, []byte("\n")) // header, 2 entries, mac, ""
	hashA, _ := vault.LedgerHash(lk, "subject-a")
	var lineA, lineC []byte
	for _, l := range lines[1:3] {
		if bytes.Contains(l, []byte(hex.EncodeToString(hashA))) {
			lineA = l
		} else {
			lineC = l
		}
	}
	if lineA == nil || lineC == nil {
		t.Fatal("A's entry is not in the ledger file")
	}
	count := func(b []byte, n int) []byte {
		return bytes.Replace(b, []byte(`"entries":2`), []byte(fmt.Sprintf(`"entries":%d`, n)), 1)
	}
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	fake := bytes.Replace(lineC, lineC[17:81], []byte(strings.Repeat("ab", 32)), 1) // another subject_hash
	later := bytes.Replace(lineC, []byte(`"erased_at":"20`), []byte(`"erased_at":"21`), 1)
	restoreFile := func(t *testing.T, path string, allowLegacy bool) (string, error) {
		target := filepath.Join(t.TempDir(), "restored")
		l, err := backup.ReadLedger(path)
		if err != nil {
			return target, err
		}
		_, err = backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: target, Files: []string{full},
			Identities: []age.Identity{id}, LedgerKey: lk, Ledger: l, LedgerSource: path, VerifyKey: vk,
			AllowUnauthenticated: allowLegacy})
		return target, err
	}
	for name, tc := range map[string]struct {
		file []byte
		want error
	}{
		"A's entry dropped":         {count(join(lines[0], lineC, lines[3]), 1), backup.ErrBadMAC},
		"entry added":               {count(join(lines[0], lines[1], lines[2], fake, lines[3]), 3), backup.ErrBadMAC},
		"reordered":                 {join(lines[0], lines[2], lines[1], lines[3]), backup.ErrBadMAC},
		"erasure time changed":      {bytes.Replace(good, lineC, later, 1), backup.ErrBadMAC},
		"A's entry and mac dropped": {count(join(lines[0], lineC), 1), backup.ErrLedger},
		"truncated":                 {join(lines[0], lines[1], lines[2]), backup.ErrLedger},
		// Made to look like a file of an earlier release, without the MAC.
		"stripped to v1": {bytes.Replace(count(join(lines[0], lineC), 1), []byte(backup.LedgerFormat), []byte(backup.LedgerFormatV1), 1), backup.ErrUnauthenticated},
	} {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(tc.file, good) {
				t.Fatal("the tampered file is the good one")
			}
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			if err := os.WriteFile(path, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			target, err := restoreFile(t, path, false)
			refused(t, err, tc.want, path, target)
			if tc.want == backup.ErrBadMAC {
				// The legacy flag accepts a file without a MAC, never one
				// with a wrong MAC.
				target, err := restoreFile(t, path, true)
				refused(t, err, tc.want, path, target)
			}
		})
	}
	// The same check on a ledger fetched from the server.
	dropped := fetched
	dropped.Entries = fetched.Entries[1:]
	_, err = backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: filepath.Join(dir, "r"), Files: []string{full},
		Identities: []age.Identity{id}, LedgerKey: lk, Ledger: dropped, LedgerSource: "the ledger from the server", VerifyKey: vk})
	refused(t, err, backup.ErrBadMAC, "the ledger from the server", filepath.Join(dir, "r"))

	// Control: the untampered file restores, and A stays erased.
	path := filepath.Join(dir, "ledger.jsonl")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	target, err := restoreFile(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := badgerstore.Open(target, badgerstore.Options{IDKey: lk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.SubjectKey(cx, "subject-a"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("A's key in the restored store: %v", err)
	}
	if _, err := st.SubjectKey(cx, "subject-b"); err != nil {
		t.Fatalf("B's key in the restored store: %v", err)
	}
}

// TestRestoreRefusesForgedBackup: security review finding 5. Anyone with a
// backup recipient's public key can make a well-formed backup file (here
// from a fresh store of their own, as a tokenvault install or a few lines
// of Go would); without the vault's signature the restore refuses it
// before decrypting anything, and a signature that is not the vault's
// over this very file is refused even with the legacy flag.
func TestRestoreRefusesForgedBackup(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	if _, err := c.Tokenize(cx, "subject-b", subjectB...); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Restrict(cx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	genuine := filepath.Join(dir, "genuine.tvbak")
	gh := backupTo(t, c, genuine, id.Recipient().String(), 0)
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil {
		t.Fatal(err)
	}
	a.Stop()
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	vk := verifyKey(t, e)

	// The forger's payload: a store of their own (no restriction, no
	// erasures), encrypted to the recipient's public key alone.
	st, err := badgerstore.Open(filepath.Join(dir, "forger"), badgerstore.Options{IDKey: lk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	enc, err := backup.Encrypt(&ct, []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	next, err := backup.WritePayload(enc, st, 0)
	if err != nil || enc.Close() != nil {
		t.Fatal(err)
	}
	st.Close()
	_, forgerKey, _ := ed25519.GenerateKey(nil)
	digest := sha256.Sum256(ct.Bytes())
	genuineBytes, _ := os.ReadFile(genuine)
	genuineCT := genuineBytes[gh.Size():]
	write := func(name string, h backup.Header, ciphertext []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, append(h.Marshal(), ciphertext...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unsigned := write("unsigned.tvbak", backup.Header{Since: 0, Next: next}, ct.Bytes())
	restore := func(file string, allowLegacy bool) (string, backup.RestoreResult, error) {
		target := filepath.Join(t.TempDir(), "restored")
		res, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: target, Files: []string{file},
			Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger, VerifyKey: vk, AllowUnauthenticated: allowLegacy})
		return target, res, err
	}
	for name, file := range map[string]string{
		"signed by another key": write("other-key.tvbak", backup.SignBackup(forgerKey, 0, next, digest[:]), ct.Bytes()),
		"vault's signature copied": write("copied-sig.tvbak", backup.Header{Since: 0, Next: next, KeyID: gh.KeyID,
			Signature: gh.Signature}, ct.Bytes()),
		"vault's header, forged ciphertext": write("spliced.tvbak", gh, ct.Bytes()),
		"vault's ciphertext, forged next": write("next.tvbak", backup.Header{Since: 0, Next: gh.Next + 1, KeyID: gh.KeyID,
			Signature: gh.Signature}, genuineCT),
	} {
		t.Run(name, func(t *testing.T) {
			for _, allow := range []bool{false, true} {
				target, _, err := restore(file, allow)
				refused(t, err, backup.ErrBadSignature, file, target)
			}
		})
	}
	t.Run("unsigned", func(t *testing.T) {
		target, _, err := restore(unsigned, false)
		refused(t, err, backup.ErrUnauthenticated, unsigned, target)
		// Control: the forgery is a backup the restore would load (and
		// lose B's restriction and data) once told to accept legacy files:
		// only the missing signature stopped it above.
		target, res, err := restore(unsigned, true)
		if err != nil || len(res.Unauthenticated) != 1 || res.Unauthenticated[0] != unsigned {
			t.Fatalf("legacy restore of the forgery: %+v, %v", res, err)
		}
		st, err := badgerstore.Open(target, badgerstore.Options{IDKey: lk}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.SubjectKey(cx, "subject-b"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("the forged store holds B: %v", err)
		}
	})
	// The genuine file restores, with B still restricted.
	target, _, err := restore(genuine, false)
	if err != nil {
		t.Fatal(err)
	}
	e2 := *e
	e2.dataDir = target
	_, c2 := e2.start(t)
	ex, err := c2.ExportSubject(cx, "subject-b", "dsar")
	if err != nil || ex.RestrictedSince.IsZero() {
		t.Fatalf("B after restoring the genuine backup: restricted since %v, %v", ex.RestrictedSince, err)
	}
}

// TestRestoreLegacyFiles: backup and ledger files as the previous release
// wrote them (tokenvault-backup/v1, tokenvault-erasure-ledger/v1, no
// signature or MAC) are refused by default with an error naming the file,
// and restore when the operator allows unauthenticated legacy files; each
// such file is logged and reported, and erased subjects stay erased.
func TestRestoreLegacyFiles(t *testing.T) {
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
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	h := backupTo(t, c, full, id.Recipient().String(), 0)
	if _, err := c.EraseSubject(cx, "subject-a"); err != nil {
		t.Fatal(err)
	}
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil {
		t.Fatal(err)
	}
	a.Stop()
	// The previous release wrote the same payload and ciphertext behind a
	// header without key and sig, and a ledger file without a mac line.
	b, _ := os.ReadFile(full)
	legacyBackup := filepath.Join(dir, "legacy.tvbak")
	os.WriteFile(legacyBackup, append(backup.Header{Since: h.Since, Next: h.Next}.Marshal(), b[h.Size():]...), 0o600)
	if lh, err := backup.HeaderOf(legacyBackup); err != nil || lh.Signed() {
		t.Fatalf("legacy header: %+v, %v", lh, err)
	}
	legacyLedger := filepath.Join(dir, "legacy.jsonl")
	unauth := ledger
	unauth.MAC = nil
	if err := backup.WriteLedger(legacyLedger, unauth); err != nil {
		t.Fatal(err)
	}
	if lb, _ := os.ReadFile(legacyLedger); !bytes.Contains(lb, []byte(backup.LedgerFormatV1)) || bytes.Contains(lb, []byte(`"mac"`)) {
		t.Fatalf("not a v1 ledger file: %s", lb)
	}
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	vk := verifyKey(t, e)
	l, err := backup.ReadLedger(legacyLedger)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	restore := func(files []string, l backup.Ledger, allow bool) (string, backup.RestoreResult, error) {
		target := filepath.Join(t.TempDir(), "restored")
		res, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: intoBadger, DataDir: target, Files: files,
			Identities: []age.Identity{id}, LedgerKey: lk, Ledger: l, LedgerSource: legacyLedger, VerifyKey: vk,
			AllowUnauthenticated: allow, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		return target, res, err
	}
	target, _, err := restore([]string{legacyBackup}, ledger, false)
	refused(t, err, backup.ErrUnauthenticated, legacyBackup, target)
	target, _, err = restore([]string{full}, l, false)
	refused(t, err, backup.ErrUnauthenticated, legacyLedger, target)

	target, res, err := restore([]string{legacyBackup}, l, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || len(res.Unauthenticated) != 2 {
		t.Fatalf("legacy restore: re-erased %d, unauthenticated %v; want 1 and both files", res.ReErased, res.Unauthenticated)
	}
	for _, f := range []string{legacyBackup, legacyLedger} {
		if !strings.Contains(logs.String(), "unauthenticated legacy file") || !strings.Contains(logs.String(), f) {
			t.Fatalf("the log does not record accepting %s: %s", f, logs.String())
		}
	}
	if strings.Contains(logs.String(), "subject-") {
		t.Fatalf("the log names a subject: %s", logs.String())
	}
	st, err := badgerstore.Open(target, badgerstore.Options{IDKey: lk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.SubjectKey(cx, "subject-a"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("A's key in the restored store: %v", err)
	}
	if _, err := st.SubjectKey(cx, "subject-b"); err != nil {
		t.Fatalf("B's key in the restored store: %v", err)
	}
}
