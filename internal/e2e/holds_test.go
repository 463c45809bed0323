package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// clock is the injected clock of a holds test: real time plus an offset
// the test moves past a hold's end.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

var taxHold = config.HoldsConfig{"tax": {Keep: config.HoldKeep{Years: 7}, Purposes: []string{"legal", "tax-audit"}}}

// startHolds starts e's server with the tax hold class and clk as its
// clock, shredding due holds every 50ms.
func startHolds(t *testing.T, e *env, clk *clock) (*app.App, *client.Client) {
	t.Helper()
	e.holds, e.now, e.purgeInterval = taxHold, clk.Now, 50*time.Millisecond
	return e.start(t)
}

// waitHoldReceipts polls until the server made n hold receipts for subject
// (the shred runs in the background; no bound on how long it may take
// beyond the test's context).
func waitHoldReceipts(t *testing.T, cx context.Context, c *client.Client, subject string, n int) []client.Receipt {
	t.Helper()
	for {
		rs, err := c.HoldReceipts(cx, subject)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) >= n {
			return rs
		}
		select {
		case <-cx.Done():
			t.Fatalf("no hold receipt for %s: %v", subject, cx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wantHeld checks that a reveal was refused for a purpose outside the hold.
func wantHeld(t *testing.T, err error, purpose string) {
	t.Helper()
	wantCode(t, err, codes.FailedPrecondition, purpose)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Reason != errinfo.HeldAfterErasure || !errors.Is(err, client.ErrHeld) {
		t.Fatalf("err = %#v, want reason %s (client.ErrHeld)", err, errinfo.HeldAfterErasure)
	}
}

// TestLegalHold: an erasure with a tax hold removes what is not held at
// once; held data stays, revealed only for the hold's purposes, until the
// hold ends (injected clock), when it is shredded with a second signed
// receipt.
//
// On badger and on PostgreSQL (withEachStore).
func TestLegalHold(t *testing.T) { withEachStore(t, testLegalHold) }

func testLegalHold(t *testing.T, e *env) {
	clk := &clock{}
	_, c := startHolds(t, e, clk)
	cx := ctx(t)
	const subject = "holds-1"

	own, err := c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111"},
		client.Field{Kind: "email", Value: "holder@example.com", Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	held, err := c.Tokenize(cx, subject, client.Field{Kind: "bank-account", Value: "12345678901", Hold: "tax"},
		client.Field{Kind: "name", Value: "Ada Holder", Hold: "tax", Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	ownBlob, err := c.Encrypt(cx, subject, "orders.note", []byte("leave at the door"))
	if err != nil {
		t.Fatal(err)
	}
	heldBlob, err := c.EncryptHeld(cx, subject, "invoices.address", "tax", []byte("1 Tax Street"))
	if err != nil {
		t.Fatal(err)
	}
	// Bad holds name the field.
	_, err = c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111", Hold: "nope"})
	wantCode(t, err, codes.InvalidArgument, "fields[0].options.hold")
	_, err = c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111", Hold: "tax"},
		client.Field{Kind: "pan", Value: "4111 1111 1111 1111"})
	wantCode(t, err, codes.InvalidArgument, "fields[1].options.hold")
	_, err = c.EncryptHeld(cx, subject, "x", "nope", []byte("v"))
	wantCode(t, err, codes.InvalidArgument, "items[0].hold")

	// Before the erasure held data is ordinary data.
	det, err := c.Detokenize(cx, "payment", held...)
	if err != nil || det[0].Err != nil || det[0].Value != "12345678901" || det[1].Err != nil {
		t.Fatalf("held data before the erasure: %+v, %v", det, err)
	}
	ex, err := c.ExportSubject(cx, subject, "dsar")
	if err != nil || len(ex.Tokens) != 4 || len(ex.Holds) != 1 || ex.Holds[0].HeldUntil != nil {
		t.Fatalf("export before the erasure: %+v, %v", ex, err)
	}

	r, rc, pub := eraseVerified(t, cx, c, subject)
	if rc.Records != 2 || len(rc.Held) != 1 || rc.Held[0].Class != "tax" || !strings.Contains(string(r.Signed), receipt.FormatV2) {
		t.Fatalf("receipt %+v: want 2 records erased now and the tax hold", rc)
	}
	until := rc.Held[0].Until
	if want := rc.ErasedAt.AddDate(7, 0, 0); !until.Equal(want) {
		t.Fatalf("held until %v, want erasure + 7 years = %v", until, want)
	}
	if len(r.Held) != 1 || !r.Held[0].Until.Equal(until) || r.Verify(pub) != nil {
		t.Fatalf("the client's receipt %+v does not match the signed one", r.Receipt)
	}

	// Not held: gone at once.
	det, err = c.Detokenize(cx, "legal", own...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range det {
		wantCode(t, d.Err, codes.NotFound, "")
	}
	dec, err := c.Decrypt(cx, "legal", "orders.note", ownBlob[0])
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, dec[0].Err, codes.NotFound, "erased")
	// Held: only for the hold's purposes.
	det, err = c.Detokenize(cx, "legal", held...)
	if err != nil || det[0].Err != nil || det[0].Value != "12345678901" || det[1].Err != nil || det[1].Value != "Ada Holder" {
		t.Fatalf("held data for legal: %+v, %v", det, err)
	}
	det, err = c.Detokenize(cx, "marketing", held...)
	if err != nil {
		t.Fatal(err)
	}
	wantHeld(t, det[0].Err, `"marketing"`)
	dec, err = c.Decrypt(cx, "tax-audit", "invoices.address", heldBlob[0])
	if err != nil || dec[0].Err != nil || string(dec[0].Value) != "1 Tax Street" || dec[0].Subject != subject {
		t.Fatalf("held blob for tax-audit: %+v, %v", dec, err)
	}
	dec, err = c.Decrypt(cx, "payment", "invoices.address", heldBlob[0])
	if err != nil {
		t.Fatal(err)
	}
	wantHeld(t, dec[0].Err, `"payment"`)
	// Masks show no value, as under a restriction.
	if m, err := c.Mask(cx, held[0]); err != nil || m[0].Err != nil {
		t.Fatalf("mask of held data: %+v, %v", m, err)
	}
	// The export shows what is held and until when.
	ex, err = c.ExportSubject(cx, subject, "dsar")
	if err != nil || len(ex.Tokens) != 2 || len(ex.Holds) != 1 || ex.Holds[0].HeldUntil == nil || !ex.Holds[0].HeldUntil.Equal(until) ||
		ex.Tokens[0].Hold != "tax" || ex.Holds[0].BlobKeyID != hexOf(heldBlob[0][2:18]) {
		t.Fatalf("export after the erasure: %+v, %v", ex, err)
	}
	// Held data is frozen until the hold ends.
	_, err = c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111", Hold: "tax"})
	wantCode(t, err, codes.FailedPrecondition, "hold")
	// Erasing again finds nothing more to erase.
	_, err = c.EraseSubject(cx, subject)
	wantCode(t, err, codes.NotFound, "subject_id")
	if rs, err := c.HoldReceipts(cx, subject); err != nil || len(rs) != 0 {
		t.Fatalf("hold receipts while the hold runs: %d, %v", len(rs), err)
	}

	// The hold ends: the maintenance loop shreds it and signs a receipt.
	clk.advance(7*365*24*time.Hour + 3*24*time.Hour)
	rs := waitHoldReceipts(t, cx, c, subject, 1)
	hr, err := receipt.Parse(rs[0].Signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := hr.Verify(pub); err != nil || hr.Subject != subject || hr.HoldClass != "tax" || hr.Records != 2 || hr.Lookups != 1 ||
		!hr.SubjectErasedAt.Equal(rc.ErasedAt) || hr.ErasedAt.Before(until) {
		t.Fatalf("hold receipt %+v: %v", hr, err)
	}
	if err := rs[0].Verify(pub); err != nil || rs[0].HoldClass != "tax" {
		t.Fatalf("the client's hold receipt %+v does not verify: %v", rs[0].Receipt, err)
	}
	det, err = c.Detokenize(cx, "legal", held...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range det {
		if status := d.Err; status == nil {
			t.Fatal("held data revealed after its hold ended")
		}
	}
	dec, err = c.Decrypt(cx, "legal", "invoices.address", heldBlob[0])
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, dec[0].Err, codes.NotFound, "erased")
	_, err = c.ExportSubject(cx, subject, "dsar")
	wantCode(t, err, codes.NotFound, "subject_id")
	// A new life for the subject id: new data under the class is taken.
	if _, err := c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111", Hold: "tax"}); err != nil {
		t.Fatalf("tokenize under the hold after it ended: %v", err)
	}
	if rs, _ := c.HoldReceipts(cx, subject); len(rs) != 1 {
		t.Fatalf("%d hold receipts, want 1", len(rs))
	}
	// No subject id in the clear at rest: not in hold keys, schedules or
	// the stored receipt.
	if hits := atRest(t, e, subject); len(hits) > 0 {
		t.Errorf("the subject id is in %v", hits)
	}
}

// TestLegalHoldRestore: a backup taken before the erasure, restored
// afterwards, brings back neither the erased data nor drops the held data:
// the restore schedules the hold from the ledger, so the restored server
// reveals it only for the hold's purposes and shreds it when it ends.
func TestLegalHoldRestore(t *testing.T) {
	e := newEnv(t)
	clk := &clock{}
	a, c := startHolds(t, e, clk)
	cx := ctx(t)
	const subject = "holds-restore"
	own, err := c.Tokenize(cx, subject, client.Field{Kind: "pan", Value: "4111 1111 1111 1111"})
	if err != nil {
		t.Fatal(err)
	}
	held, err := c.Tokenize(cx, subject, client.Field{Kind: "bank-account", Value: "12345678901", Hold: "tax"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tvbak")
	h1 := backupTo(t, c, full, id.Recipient().String(), 0)

	_, rc, pub := eraseVerified(t, cx, c, subject)
	ledger, err := backup.FetchLedger(cx, c)
	if err != nil {
		t.Fatal(err)
	}
	// An incremental backup after the erasure holds the hold's schedule.
	inc := filepath.Join(dir, "inc.tvbak")
	backupTo(t, c, inc, id.Recipient().String(), h1.Next)
	a.Stop()

	lk, err := keyfile.LoadLedgerKey(filepath.Join(e.keysDir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(dir, "restored")
	opts := backup.RestoreOptions{Open: intoBadger, DataDir: restored, Files: []string{full}, Identities: []age.Identity{id},
		LedgerKey: lk, Ledger: ledger, VerifyKey: pub}
	// Without the holds configuration the restore cannot keep the hold's end.
	if _, err := backup.Restore(context.Background(), opts); err == nil || !strings.Contains(err.Error(), `"tax"`) {
		t.Fatalf("restore without the holds configuration = %v, want a refusal naming the class", err)
	}
	opts.Holds = taxHold.Vault()
	res, err := backup.Restore(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.ReErased != 1 || res.Held != 1 {
		t.Fatalf("restore: %+v; want the subject re-erased and its held key scheduled", res)
	}

	// With the incremental backup the schedule comes from the backup
	// itself, and is the same.
	withInc := opts
	withInc.DataDir, withInc.Files = filepath.Join(dir, "restored-inc"), []string{full, inc}
	if res, err := backup.Restore(context.Background(), withInc); err != nil || res.ReErased != 1 || res.Held != 1 {
		t.Fatalf("restore with the incremental backup: %+v, %v", res, err)
	}
	e3 := *e
	e3.dataDir = withInc.DataDir
	a3, c3 := startHolds(t, &e3, clk)
	if ex, err := c3.ExportSubject(cx, subject, "dsar"); err != nil || len(ex.Holds) != 1 || !ex.Holds[0].HeldUntil.Equal(rc.Held[0].Until) {
		t.Fatalf("export of the hold restored with its schedule: %+v, %v", ex, err)
	}
	a3.Stop()

	e2 := *e
	e2.dataDir = restored
	a2, c2 := startHolds(t, &e2, clk)
	det, err := c2.Detokenize(cx, "legal", own[0], held[0])
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, det[0].Err, codes.NotFound, "")
	if det[1].Err != nil || det[1].Value != "12345678901" {
		t.Fatalf("held data after the restore: %+v", det[1])
	}
	det, err = c2.Detokenize(cx, "marketing", held[0])
	if err != nil {
		t.Fatal(err)
	}
	wantHeld(t, det[0].Err, `"marketing"`)
	ex, err := c2.ExportSubject(cx, subject, "dsar")
	if err != nil || len(ex.Holds) != 1 || ex.Holds[0].HeldUntil == nil || !ex.Holds[0].HeldUntil.Equal(rc.Held[0].Until) {
		t.Fatalf("export of the restored hold: %+v, %v", ex, err)
	}

	// The restored server shreds it when it ends.
	clk.advance(7*366*24*time.Hour + 24*time.Hour)
	rs := waitHoldReceipts(t, cx, c2, subject, 1)
	if err := rs[0].Verify(pub); err != nil || rs[0].HoldClass != "tax" {
		t.Fatalf("hold receipt after the restore: %+v, %v", rs[0].Receipt, err)
	}
	det, err = c2.Detokenize(cx, "legal", held[0])
	if err != nil || det[0].Err == nil {
		t.Fatalf("held data revealed after its hold ended: %+v, %v", det, err)
	}

	// A restore after the shred drops the held data too: the shred put the
	// hold key in the ledger. A backup taken after it keeps the receipt.
	ledger2, err := backup.FetchLedger(cx, c2)
	if err != nil || len(ledger2.Entries) != 2 {
		t.Fatalf("ledger after the hold's shred: %d entries, %v", len(ledger2.Entries), err)
	}
	after := filepath.Join(dir, "after.tvbak")
	backupTo(t, c2, after, id.Recipient().String(), 0)
	a2.Stop()
	opts.DataDir, opts.Ledger = filepath.Join(dir, "restored-2"), ledger2
	res, err = backup.Restore(context.Background(), opts)
	if err != nil || res.ReErased != 2 || res.Held != 0 {
		t.Fatalf("restore after the shred: %+v, %v; want both keys re-erased and nothing held", res, err)
	}
	opts.DataDir, opts.Files = filepath.Join(dir, "restored-3"), []string{after}
	if res, err = backup.Restore(context.Background(), opts); err != nil || res.Held != 0 {
		t.Fatalf("restore of the backup after the shred: %+v, %v", res, err)
	}
	e4 := *e
	e4.dataDir = opts.DataDir
	_, c4 := startHolds(t, &e4, clk)
	if rs, err := c4.HoldReceipts(cx, subject); err != nil || len(rs) != 1 || rs[0].Verify(pub) != nil {
		t.Fatalf("hold receipts after a restore: %+v, %v", rs, err)
	}
	det, err = c4.Detokenize(cx, "legal", held[0])
	if err != nil || det[0].Err == nil {
		t.Fatalf("held data back after a restore: %+v, %v", det, err)
	}
}
