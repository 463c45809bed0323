package e2e

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestAuditGaps (security review, finding 8, and the review of its fix):
// deterministic tokenize calls are audited; rectify entries name the
// token (keyed hash) and its subject; backup entries name the recipients;
// streaming calls that send data — backup, ledger export, KEK rotation —
// are audited before their first message (a STARTED entry) and again with
// their outcome.
func TestAuditGaps(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	tok, err := c.Tokenize(cx, "gap-subject", client.Field{Kind: "email", Value: "old@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rectify(cx, tok[0], "new@example.com"); err != nil {
		t.Fatal(err)
	}
	// A deterministic tokenize can confirm a guessed value: audited, field
	// by field; the random field of the same call is not listed.
	det, err := c.Tokenize(cx, "gap-subject", client.Field{Kind: "ssn", Value: "078-05-1120", Deterministic: true},
		client.Field{Kind: "pan", Value: "4111 1111 1111 1111"})
	if err != nil {
		t.Fatal(err)
	}
	// A refused decrypt is audited under the blob's subject too, as a
	// decrypt is (restricted; the wrong context), though the caller is
	// not told whose blob it holds.
	blobs, err := c.Encrypt(cx, "gap-blob", "orders.note", []byte("1 Main St"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Decrypt(cx, "support", "orders.other", blobs[0]); err != nil || !errors.Is(res[0].Err, client.ErrInvalidArgument) || res[0].Subject != "" {
		t.Fatalf("decrypt in the wrong context: %+v, %v", res, err)
	}
	if _, err := c.Restrict(cx, "gap-blob"); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Decrypt(cx, "support", "orders.note", blobs[0]); err != nil || !errors.Is(res[0].Err, client.ErrFailedPrecondition) || res[0].Subject != "" {
		t.Fatalf("decrypt while restricted: %+v, %v", res, err)
	}
	id, _ := age.GenerateX25519Identity()
	backupTo(t, c, filepath.Join(t.TempDir(), "full.tvbak"), id.Recipient().String(), 0)
	ledger, err := c.BackupAdmin().ExportErasureLedger(cx, &pb.ExportErasureLedgerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ledger.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	rot, err := c.KeyAdmin().RotateKek(cx, &pb.RotateKekRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := rot.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetDone() {
			break
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(e.keysDir, "audit-signing.key")
	entries := verifiedAuditEntries(t, a, keyFile)
	hasher := tokenHasher(t, keyFile)

	var rect []audit.Entry
	for _, x := range entries {
		if x.Op == "rectify" {
			rect = append(rect, x)
		}
	}
	if len(rect) != 1 || rect[0].Outcome != "OK" || rect[0].SubjectHash != subjectHash(t, e.keysDir, "gap-subject") || len(rect[0].Items) != 1 ||
		rect[0].Items[0] != (audit.Item{Token: hasher.Hash(tok[0]), Outcome: "OK"}) {
		t.Errorf("rectify entries %+v", rect)
	}

	var decs []audit.Item
	for _, x := range entries {
		if x.Op == "decrypt" {
			decs = append(decs, x.Items...)
		}
	}
	blobSubject := subjectHash(t, e.keysDir, "gap-blob")
	if want := []audit.Item{{SubjectHash: blobSubject, Context: "orders.other", Outcome: "InvalidArgument"},
		{SubjectHash: blobSubject, Context: "orders.note", Outcome: "FailedPrecondition"}}; !slices.Equal(decs, want) {
		t.Errorf("decrypt items %+v, want %+v", decs, want)
	}

	var toks []audit.Entry
	for _, x := range entries {
		if x.Op == "tokenize" {
			toks = append(toks, x)
		}
	}
	if len(toks) != 1 || toks[0].Outcome != "OK" || toks[0].SubjectHash != subjectHash(t, e.keysDir, "gap-subject") || len(toks[0].Items) != 1 ||
		toks[0].Items[0] != (audit.Item{Token: hasher.Hash(det[0]), Kind: "ssn", Outcome: "OK"}) {
		t.Errorf("tokenize entries (want only the deterministic call, its deterministic field): %+v", toks)
	}

	for _, m := range []string{pb.BackupAdmin_Backup_FullMethodName, pb.BackupAdmin_ExportErasureLedger_FullMethodName, pb.KeyAdmin_RotateKek_FullMethodName} {
		var outcomes []string
		for _, x := range entries {
			if x.Method != m {
				continue
			}
			outcomes = append(outcomes, x.Outcome)
			if m == pb.BackupAdmin_Backup_FullMethodName && !slices.Equal(x.Recipients, []string{id.Recipient().String()}) {
				t.Errorf("backup entry names recipients %v", x.Recipients)
			}
		}
		if !slices.Equal(outcomes, []string{"STARTED", "OK"}) {
			t.Errorf("%s: entries with outcomes %v, want [STARTED OK]", m, outcomes)
		}
	}
}

// TestRefusalDetails: every refusal of the guard carries an ErrorInfo
// reason (mapped by the client to a typed error) and, where a field is at
// fault, names it in a BadRequest.
func TestRefusalDetails(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	tok, err := s.as(t, "setup").Tokenize(c, "details", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	anon := dialTLS(t, s.app.Addr(), s.pki.CAFile, "", "")
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		is     error
		reason string
		field  string
	}{
		// Refused before the request is read (the guard's tap handle),
		// with the same details as any other refusal.
		{"no credentials", func() error { _, err := anon.Mask(c, tok...); return err },
			codes.Unauthenticated, client.ErrUnauthenticated, "UNAUTHENTICATED", ""},
		{"no role", func() error { _, err := s.as(t, "nobody").Detokenize(c, "payment", tok...); return err },
			codes.PermissionDenied, client.ErrPermissionDenied, "PERMISSION_DENIED", ""},
		{"no purpose", func() error { _, err := s.as(t, "payments").Detokenize(c, "", tok...); return err },
			codes.InvalidArgument, client.ErrInvalidArgument, "INVALID_ARGUMENT", "purpose"},
		{"kind not allowed", func() error {
			_, err := s.as(t, "orders").Tokenize(c, "details", client.Field{Kind: "ssn", Value: authzValues["ssn"]})
			return err
		}, codes.PermissionDenied, client.ErrPermissionDenied, "PERMISSION_DENIED", "fields[0].kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ce *client.Error
			if status.Code(err) != tc.code || !errors.Is(err, tc.is) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want %v (%v)", err, tc.code, tc.is)
			}
			if ce.Reason != tc.reason || ce.Field != tc.field {
				t.Fatalf("reason %q field %q, want %q %q", ce.Reason, ce.Field, tc.reason, tc.field)
			}
		})
	}
}
