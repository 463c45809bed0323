package grpcserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// TestCall: an in-process call (the privacy console) is identified,
// admitted, refused and audited as the gRPC call of its method.
func TestCall(t *testing.T) {
	dir := t.TempDir()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	logPath := filepath.Join(dir, "audit.jsonl")
	l, err := audit.Open(audit.Options{Path: logPath, SigningKey: key, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(`version: 1
identities:
  - api_key: officer
    roles: [officer]
  - api_key: support
    roles: [support]
roles:
  officer:
    - operations: [detokenize]
      purposes: [dsar]
  support:
    - operations: [mask]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := auth.LoadPolicyFile(polPath)
	if err != nil {
		t.Fatal(err)
	}
	const officerKey, supportKey = "officer-secret-key", "support-secret-key"
	keys, err := auth.NewAPIKeys([]auth.APIKey{{Name: "officer", Hash: auth.HashAPIKey(officerKey)}, {Name: "support", Hash: auth.HashAPIKey(supportKey)}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(GuardConfig{Policy: pol, APIKeys: keys, Audit: l, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}

	officer, err := g.Identify(nil, officerKey)
	if err != nil || officer.String() != "api_key:officer" {
		t.Fatalf("Identify(officer) = %v, %v", officer, err)
	}
	if _, err := g.Identify(nil, "wrong"); !errors.Is(err, auth.ErrUnauthenticated) || bytes.Contains([]byte(err.Error()), []byte("wrong")) {
		t.Fatalf("Identify(wrong key) = %v", err)
	}
	if _, err := g.Identify(nil, ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Identify(nothing) under a policy = %v", err)
	}
	support, _ := g.Identify(nil, supportKey)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	ctx := context.Background()
	detok := pb.TokenVault_Detokenize_FullMethodName

	ran := 0
	h := func(ctx context.Context) error {
		ran++
		if auth.AccessFrom(ctx).ID.Name == "" {
			t.Error("the handler's context carries no access")
		}
		return nil
	}
	for _, tc := range []struct {
		name   string
		id     auth.Identity
		method string
		req    any
		code   codes.Code
	}{
		{"allowed", officer, detok, &pb.DetokenizeRequest{Tokens: []string{"tok_x"}, Purpose: "dsar"}, codes.OK},
		{"no purpose", officer, detok, &pb.DetokenizeRequest{Tokens: []string{"tok_x"}}, codes.InvalidArgument},
		{"other purpose", officer, detok, &pb.DetokenizeRequest{Tokens: []string{"tok_x"}, Purpose: "marketing"}, codes.PermissionDenied},
		{"mask-only identity", support, detok, &pb.DetokenizeRequest{Tokens: []string{"tok_x"}, Purpose: "dsar"}, codes.PermissionDenied},
		{"unknown method", officer, "/tokenvault.v1.TokenVault/Nope", &pb.DetokenizeRequest{}, codes.PermissionDenied},
	} {
		before := ran
		err := g.Call(ctx, tc.id, addr, tc.method, tc.req, h)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
		if (tc.code == codes.OK) != (ran > before) {
			t.Errorf("%s: handler ran %d times", tc.name, ran-before)
		}
	}
	// A domain error from h goes through the one table.
	err = g.Call(ctx, officer, addr, detok, &pb.DetokenizeRequest{Tokens: []string{"tok_x"}, Purpose: "dsar"},
		func(context.Context) error { return fmt.Errorf("listing: %w", vault.ErrNotFound) })
	if status.Code(err) != codes.NotFound {
		t.Errorf("domain error from h: %v, want NotFound", err)
	}
	// CallAudited: a listing is on record naming its subject, allowed
	// (no item refused) or refused (an identity without mask).
	mask := pb.TokenVault_Mask_FullMethodName
	if err := g.CallAudited(ctx, support, addr, mask, "carol", &pb.MaskRequest{}, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("support's listing: %v", err)
	}
	if err := g.CallAudited(ctx, officer, addr, mask, "carol", &pb.MaskRequest{}, h); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("officer's listing (no mask permission): %v, want PermissionDenied", err)
	}
	g.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var ok, denied int
	listings := map[string]bool{} // caller and outcome: names the subject
	for _, ln := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		e = e.Expanded() // the method's full name, as entries shorten it
		if e.Method == mask {
			listings[e.Caller+" "+e.Outcome] = e.Subject == "carol"
			continue
		}
		if e.Method != detok {
			continue
		}
		if host, _, _ := net.SplitHostPort(addr.String()); e.Peer != host { // entries keep the host only

			t.Errorf("entry peer %q, want the browser's host", e.Peer)
		}
		switch {
		case e.Outcome == "NotFound":
		case e.Outcome == "OK" && e.Caller == "api_key:officer" && e.Purpose == "dsar" && len(e.Items) == 1:
			ok++
		case e.Outcome == "PermissionDenied" || e.Outcome == "InvalidArgument":
			denied += max(int(e.Count), 1)
		}
	}
	if !listings["api_key:support OK"] || !listings["api_key:officer PermissionDenied"] {
		t.Errorf("listings audited (naming the subject): %v, want support's OK and officer's refusal, both naming it", listings)
	}
	if ok != 1 || denied != 3 {
		t.Fatalf("audit log: %d allowed and %d refused detokenize entries, want 1 and 3:\n%s", ok, denied, b)
	}
}

func TestStreaming(t *testing.T) {
	for m, want := range map[string]bool{
		pb.TokenVault_ExportSubject_FullMethodName: true,
		pb.KeyAdmin_RotateKek_FullMethodName:       true,
		pb.TokenVault_Detokenize_FullMethodName:    false,
		pb.KeyAdmin_GetKekStatus_FullMethodName:    false,
	} {
		if streaming(m) != want {
			t.Errorf("streaming(%s) = %v", m, !want)
		}
	}
}
