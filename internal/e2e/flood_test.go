package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Flood tests (security review, finding 1): thousands of concurrent
// audited calls — refused ones included — must not wedge the audit log.
// Before the fix, a full audit queue deadlocked the log: every later
// reveal, erasure and refusal hung, and so did shutdown. Run them with
// -race too (.ci/run does).

// within fails with every goroutine's stack if fn does not return in a
// few minutes: a hang detector, not a speed check.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		buf := make([]byte, 4<<20)
		t.Fatalf("%s did not return (deadlock?)\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// verifiedAuditEntries reads and verifies the log of a stopped server.
func verifiedAuditEntries(t *testing.T, a *app.App, signingKey string) []audit.Entry {
	t.Helper()
	data, err := os.ReadFile(a.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(audit.PublicKeyPath(signingKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(data), pub)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Unsigned != 0 {
		t.Fatalf("report %+v: a clean stop ends with a checkpoint", rep)
	}
	return auditEntries(t, a.AuditLogPath())
}

// tokenHasher is the audit log's keyed token hash, from its signing key.
func tokenHasher(t *testing.T, signingKey string) *audit.TokenHasher {
	t.Helper()
	keyPEM, err := os.ReadFile(signingKey)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := audit.ParseSigningKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	h, err := audit.NewTokenHasher(sk)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestFloodPolicyMode: 6,000 unauthenticated Mask calls and 2,000
// authorized reveals at once against a TLS server with a policy. Every
// reveal answers, every refusal is accounted for in the audit log
// (individually or counted), a reveal after the flood answers, and the
// server shuts down cleanly.
func TestFloodPolicyMode(t *testing.T) {
	const unauthCalls, reveals = 6000, 2000
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	tok, err := s.as(t, "setup").Tokenize(c, "flood-subject", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	var anon []pb.TokenVaultClient
	for range 4 {
		anon = append(anon, pb.NewTokenVaultClient(dialTLSRaw(t, s.app.Addr(), s.pki.CAFile)))
	}
	payments := []*client.Client{
		dialTLS(t, s.app.Addr(), s.pki.CAFile, s.certs["payments"][0], s.certs["payments"][1]),
		dialTLS(t, s.app.Addr(), s.pki.CAFile, s.certs["payments"][0], s.certs["payments"][1]),
	}
	fc, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var refused, answered atomic.Int64
	for i := range unauthCalls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := anon[i%len(anon)].Mask(fc, &pb.MaskRequest{Tokens: tok})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("unauthenticated mask: %v", err)
				return
			}
			refused.Add(1)
		}()
	}
	for i := range reveals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := payments[i%len(payments)].Detokenize(fc, "payment", tok...)
			if err != nil || res[0].Err != nil || res[0].Value != revealed["pan"] {
				t.Errorf("reveal during the flood: %v %+v", err, res)
				return
			}
			answered.Add(1)
		}()
	}
	within(t, "the flood", wg.Wait)
	if refused.Load() != unauthCalls || answered.Load() != reveals {
		t.Fatalf("%d of %d unauthenticated calls refused, %d of %d reveals answered", refused.Load(), unauthCalls, answered.Load(), reveals)
	}
	// After the flood: a reveal answers.
	rc, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	res, err := s.as(t, "payments").Detokenize(rc, "payment", tok...)
	if err != nil || res[0].Value != revealed["pan"] {
		t.Fatalf("reveal after the flood: %v %+v", err, res)
	}
	within(t, "Stop", func() {
		if err := s.app.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	var unauthAudited, counted uint64
	okReveals := 0
	for _, e := range verifiedAuditEntries(t, s.app, filepath.Join(s.keysDir, "audit-signing.key")) {
		switch {
		case e.Outcome == "Unauthenticated" && e.Type == audit.TypeCall:
			unauthAudited++
		case e.Outcome == "Unauthenticated" && e.Type == audit.TypeRefusals:
			if e.Count == 0 || e.Since == "" || e.Method != pb.TokenVault_Mask_FullMethodName {
				t.Errorf("refusals entry %+v", e)
			}
			counted += e.Count
		case e.Op == "detokenize" && e.Outcome == "OK" && e.Type == audit.TypeCall:
			okReveals++
		}
	}
	if unauthAudited+counted != unauthCalls {
		t.Errorf("%d refusals audited one by one + %d counted, want %d in all", unauthAudited, counted, unauthCalls)
	}
	if counted == 0 {
		t.Errorf("no refusal was counted: the flood was audited one entry per call (%d)", unauthAudited)
	}
	if okReveals != reveals+1 {
		t.Errorf("%d reveals audited, want %d", okReveals, reveals+1)
	}
}

// TestFloodDevMode: a 3,000-way reveal flood in dev mode; afterwards a
// reveal answers, shutdown completes, and every reveal is in the log.
func TestFloodDevMode(t *testing.T) {
	const reveals = 3000
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	tok, err := c.Tokenize(cx, "flood-subject", client.Field{Kind: "email", Value: "flood@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	raw := []pb.TokenVaultClient{pb.NewTokenVaultClient(dialRaw(t, a.Addr())), pb.NewTokenVaultClient(dialRaw(t, a.Addr()))}
	fc, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range reveals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := raw[i%2].Detokenize(fc, &pb.DetokenizeRequest{Tokens: tok, Purpose: "flood"})
			if err != nil || res.GetResults()[0].GetValue() != "flood@example.com" {
				t.Errorf("reveal during the flood: %v", err)
			}
		}()
	}
	within(t, "the flood", wg.Wait)
	res, err := c.Detokenize(cx, "after", tok...)
	if err != nil || res[0].Value != "flood@example.com" {
		t.Fatalf("reveal after the flood: %v %+v", err, res)
	}
	within(t, "Stop", func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	n := 0
	for _, e := range verifiedAuditEntries(t, a, filepath.Join(e.keysDir, "audit-signing.key")) {
		if e.Op == "detokenize" && e.Outcome == "OK" {
			n++
		}
	}
	if n != reveals+1 {
		t.Fatalf("%d reveals audited, want %d", n, reveals+1)
	}
}

// TestNonCanonicalMethodRefused (review finding 6): in dev mode a streaming
// call whose :path lacked its leading slash reached ExportSubject past the
// guard's table — no purpose check, no audit entry. Every mode now refuses
// a method name the guard does not know, before the request is read.
func TestNonCanonicalMethodRefused(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	if _, err := c.Tokenize(cx, "s1", client.Field{Kind: "pan", Value: "4111 1111 1111 1111"}); err != nil {
		t.Fatal(err)
	}
	conn := dialRaw(t, a.Addr())
	for _, method := range []string{
		"tokenvault.v1.TokenVault/ExportSubject",   // no leading slash
		"//tokenvault.v1.TokenVault/ExportSubject", // doubled
		"/tokenvault.v1.TokenVault/exportSubject",  // case
	} {
		t.Run(method, func(t *testing.T) {
			desc := pb.TokenVault_ServiceDesc.Streams[0]
			st, err := conn.NewStream(cx, &desc, method)
			if err == nil {
				if err = st.SendMsg(&pb.ExportSubjectRequest{SubjectId: "s1"}); err == nil {
					st.CloseSend()
					err = st.RecvMsg(new(pb.ExportSubjectResponse))
				}
			}
			if c := status.Code(err); c != codes.PermissionDenied && c != codes.Unimplemented {
				t.Fatalf("%s: %v, want PermissionDenied or Unimplemented", method, err)
			}
		})
	}
}
