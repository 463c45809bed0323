package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

// TestBadgerToPostgres is the way from one node to replicas: a backup of
// a badger server, taken before subject A's erasure, restored into a
// fresh PostgreSQL database with the live erasure ledger, then served
// with store=postgres. B is intact; A stays erased on every path; no row,
// dump or data file of the database holds A's wrapped key or any
// subject id.
func TestBadgerToPostgres(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	tokA, err := c.Tokenize(cx, "subject-a", subjectA...)
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := c.Tokenize(cx, "subject-b", subjectB...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Restrict(cx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	backupTo(t, c, full, id.Recipient().String(), 0)
	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	var wrappedA []byte
	_, err = backup.ReadPayload(bytes.NewReader(decryptFile(t, full, id)), func(frame []byte) error {
		return badgerstore.ScanFrame(lk, frame, func(s string, sk vault.SubjectKey) {
			if s == "subject-a" {
				wrappedA = bytes.Clone(sk.Wrapped)
			}
		}, func(vault.LedgerEntry) {})
	})
	if err != nil || wrappedA == nil {
		t.Fatalf("A's key not in the backup: %v", err)
	}
	eraseVerified(t, cx, c, "subject-a")
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil {
		t.Fatal(err)
	}
	a.Stop()

	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
		t.Fatal(err)
	}
	vk, err := backup.LoadVerifyKey(filepath.Join(e.keysDir, "receipt-signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: backup.OpenerOf(pgstore.NewLoader), DataDir: db.DSN,
		Files: []string{full}, Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger, VerifyKey: vk})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || res.Dropped == 0 {
		t.Fatalf("restore re-erased %d subjects, dropped %d entries; want 1 and some", res.ReErased, res.Dropped)
	}
	// A second restore into the same database is refused.
	if _, err := backup.Restore(context.Background(), backup.RestoreOptions{Open: backup.OpenerOf(pgstore.NewLoader), DataDir: db.DSN,
		Files: []string{full}, Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger, VerifyKey: vk}); err == nil {
		t.Fatal("a restore into a database with data was accepted")
	}

	dump := db.Dump(t)
	db.Exec(t, "CHECKPOINT")
	files := db.DataDir(t)
	for _, needle := range [][]byte{wrappedA, []byte("subject-a"), []byte("subject-b")} {
		if bytes.Contains(dump, needle) || bytes.Contains(dump, []byte(hex.EncodeToString(needle))) {
			t.Errorf("the database dump holds %q (A's wrapped key or a subject id)", needle[:min(len(needle), 12)])
		}
		if hits := grepDir(t, files, needle); len(hits) > 0 {
			t.Errorf("PostgreSQL's files %v hold %q", hits, needle[:min(len(needle), 12)])
		}
	}

	pg := newEnv(t)
	pg.keysDir, pg.pgDSN = e.keysDir, db.DSN
	_, c2 := pg.start(t)
	det, err := c2.Detokenize(cx, "audit", tokA...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range det {
		wantCode(t, d.Err, codes.NotFound, "")
	}
	_, err = c2.ExportSubject(cx, "subject-a", "dsar")
	wantCode(t, err, codes.NotFound, "subject_id")
	// B's restriction came along: reveals refused until lifted.
	det, _ = c2.Detokenize(cx, "audit", tokB[0])
	wantCode(t, det[0].Err, codes.FailedPrecondition, "restricted")
	if err := c2.Unrestrict(cx, "subject-b"); err != nil {
		t.Fatal(err)
	}
	det, err = c2.Detokenize(cx, "audit", tokB...)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range det {
		if d.Err != nil || d.Value != normalized(t, subjectB[i].Kind, subjectB[i].Value) {
			t.Fatalf("B's token %d on postgres: %q %v", i, d.Value, d.Err)
		}
	}
	// A deterministic tokenize of A's email makes a new token.
	again, err := c2.Tokenize(cx, "subject-a", subjectA[1])
	if err != nil || again[0] == tokA[1] {
		t.Fatalf("deterministic tokenize after the restore returned the erased token (%v)", err)
	}
}
