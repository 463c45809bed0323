package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestAuditRotationOnDemand: App.RotateAuditLog (SIGHUP) and the RotateAuditLog call
// rotate the running server's audit log; the directory verifies as one
// chain, the rotation call is itself audited, subjects are hashed (and
// found by audit.Trail), and a server whose log has
// only rotated files left still refuses a new signing key.
func TestAuditRotationOnDemand(t *testing.T) {
	dir := t.TempDir()
	cfg := dirConfig(dir)
	cfg.Auth.Audit.Rotate.Compress = true
	cfg.Replica.ID = "replica-7"
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	toks, err := cl.Tokenize(ctx, "s1", client.Field{Kind: "name", Value: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Detokenize(ctx, "test", toks...); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RotateAuditLog(ctx); err != nil { // as on SIGHUP
		t.Fatal(err)
	}
	resp, err := cl.KeyAdmin().RotateAuditLog(ctx, &pb.RotateAuditLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetRotatedFile(), "audit-") {
		t.Errorf("rotated file %q", resp.GetRotatedFile())
	}
	if _, err := cl.Detokenize(ctx, "test", toks...); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.EraseSubject(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	s1, err := a.AuditSubjectHash("s1")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Dir(a.AuditLogPath())
	pub, err := os.ReadFile(filepath.Join(dir, "audit-signing.key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keyfile.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyDir(logDir, pk)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != 3 {
		t.Fatalf("%d files, want 3: %+v", len(rep.Files), rep.Files)
	}
	var reveals, rotations int
	audit.Scan(logDir, func(_ string, e audit.Entry) bool {
		if e.Subject != "" {
			t.Errorf("a subject id in the clear: entry %d", e.Seq)
		}
		if e.Replica != "replica-7" {
			t.Errorf("entry %d names replica %q", e.Seq, e.Replica)
		}
		switch {
		case e.Op == "detokenize" && e.Outcome == "OK":
			reveals++
		case strings.HasSuffix(e.Method, "/RotateAuditLog") && e.Outcome == "OK":
			rotations++
		}
		return true
	})
	if reveals != 2 || rotations != 1 {
		t.Errorf("%d reveals, %d RotateAuditLog calls audited; want 2 and 1", reveals, rotations)
	}
	if tr, err := audit.Trail(logDir, s1, 10); err != nil || len(tr) != 1 || tr[0].Entry.Op != "erase" {
		t.Errorf("trail of s1: %+v %v", tr, err)
	}
	// Only rotated files left, and no signing key: refused.
	if err := os.Remove(a.AuditLogPath()); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "audit-signing.key"), filepath.Join(dir, "audit-signing.key.moved"))
	if _, err := app.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "audit signing key") {
		t.Fatalf("start without the signing key beside rotated files: %v", err)
	}
}
