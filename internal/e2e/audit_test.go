package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestAuditScenario runs a full scenario — reveals, a kind-denied item,
// decrypt, erase, KEK admin, refused and unauthenticated calls — then
// checks the audit log: an entry for each, verify passes, any edit,
// deletion or reordering fails it, and no value, token or key appears in
// the audit log or the server log.
func TestAuditScenario(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	setup := s.as(t, "setup")
	var tokens []string
	for _, kind := range []string{"pan", "email"} {
		tok, err := setup.Tokenize(c, "audit-subject", client.Field{Kind: kind, Value: authzValues[kind]})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok[0])
	}
	blobs, err := setup.Encrypt(c, "audit-subject", "orders.note", []byte(blobPlain))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.as(t, "payments").Detokenize(c, "payment", tokens...)
	if err != nil || res[0].Value != revealed["pan"] || status.Code(res[1].Err) != codes.PermissionDenied {
		t.Fatalf("detokenize: %v %+v", err, res)
	}
	if res, err := s.as(t, "fulfilment").Decrypt(c, "shipping", "orders.note", blobs[0]); err != nil || res[0].Value != blobPlain {
		t.Fatalf("decrypt: %v %+v", err, res)
	}
	if _, err := s.as(t, "support-ui").Mask(c, tokens...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.as(t, "nobody").Detokenize(c, "payment", tokens[0]); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("nobody: %v", err)
	}
	if _, err := dialTLS(t, s.app.Addr(), s.pki.CAFile, "", "").Detokenize(c, "payment", tokens[0]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous: %v", err)
	}
	if _, err := dialTLS(t, s.app.Addr(), s.pki.CAFile, "", "", client.WithAPIKey(s.apiKey+"x")).Mask(c, tokens[0]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown key: %v", err)
	}
	adm := s.as(t, "key-admin").KeyAdmin()
	if _, err := adm.GetKekStatus(c, &pb.GetKekStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := adm.RotateKek(c, &pb.RotateKekRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetDone() {
			break
		}
	}
	if _, err := s.as(t, "privacy-ops").EraseSubject(c, "audit-subject"); err != nil {
		t.Fatal(err)
	}
	if err := s.app.Stop(); err != nil {
		t.Fatal(err)
	}

	logData, err := os.ReadFile(s.app.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	signingKey := filepath.Join(s.keysDir, "audit-signing.key")
	pubPEM, err := os.ReadFile(audit.PublicKeyPath(signingKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(logData), pub)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, logData)
	}
	if rep.Unsigned != 0 || rep.Checkpoints == 0 {
		t.Fatalf("report %+v: a clean stop must end with a checkpoint", rep)
	}

	hasher := tokenHasher(t, signingKey)
	var entries []audit.Entry
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(logData, []byte("\n")), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e.Expanded()) // as the guard made it
	}
	find := func(what string, match func(e audit.Entry) bool) audit.Entry {
		t.Helper()
		for _, e := range entries {
			if match(e) {
				return e
			}
		}
		t.Fatalf("no audit entry for %s in:\n%s", what, logData)
		return audit.Entry{}
	}
	det := find("detokenize", func(e audit.Entry) bool {
		return e.Op == "detokenize" && e.Outcome == "OK" && e.Caller == "spiffe://test.example/payments"
	})
	if det.Purpose != "payment" || det.Auth != "mtls" || det.Peer == "" || len(det.Items) != 2 ||
		det.Items[0] != (audit.Item{Token: hasher.Hash(tokens[0]), Kind: "pan", Outcome: "OK"}) ||
		det.Items[1] != (audit.Item{Token: hasher.Hash(tokens[1]), Outcome: "PermissionDenied"}) {
		t.Errorf("detokenize entry %+v", det)
	}
	dec := find("decrypt", func(e audit.Entry) bool { return e.Op == "decrypt" })
	if dec.Purpose != "shipping" || dec.Outcome != "OK" || len(dec.Items) != 1 ||
		dec.Items[0] != (audit.Item{SubjectHash: subjectHash(t, s.keysDir, "audit-subject"), Context: "orders.note", Outcome: "OK"}) {
		t.Errorf("decrypt entry %+v", dec)
	}
	// Masks of allowed kinds are not audited (no value leaves the vault).
	for _, e := range entries {
		if e.Op == "mask" && e.Outcome == "OK" {
			t.Errorf("allowed mask call audited: %+v", e)
		}
	}
	er := find("erase", func(e audit.Entry) bool { return e.Op == "erase" })
	if er.Subject != "" || er.SubjectHash != subjectHash(t, s.keysDir, "audit-subject") || er.Outcome != "OK" || er.Caller != "privacy-ops.test.example" {
		t.Errorf("erase entry %+v", er)
	}
	find("GetKekStatus", func(e audit.Entry) bool {
		return e.Op == "admin" && strings.HasSuffix(e.Method, "/GetKekStatus") && e.Outcome == "OK"
	})
	find("RotateKek", func(e audit.Entry) bool {
		return e.Op == "admin" && strings.HasSuffix(e.Method, "/RotateKek") && e.Outcome == "OK"
	})
	den := find("denied call", func(e audit.Entry) bool {
		return e.Outcome == "PermissionDenied" && e.Caller == "spiffe://test.example/nobody"
	})
	// Peer: formatted only when an entry is written (guard.go, withPeer).
	if den.Op != "detokenize" || den.Purpose != "payment" || den.Peer == "" || !strings.Contains(den.Reason, "no role") ||
		len(den.Items) != 1 || den.Items[0].Token != hasher.Hash(tokens[0]) {
		t.Errorf("denied entry %+v", den)
	}
	unauth := 0
	for _, e := range entries {
		if e.Outcome == "Unauthenticated" {
			unauth++
			if e.Peer == "" { // the tap formats it only when it refuses
				t.Errorf("refused in the tap, no peer: %+v", e)
			}
		}
	}
	if unauth != 2 {
		t.Errorf("%d Unauthenticated entries, want 2", unauth)
	}

	// No plaintext, token or API key anywhere in the audit log or the
	// server log (byte search).
	secrets := map[string]string{"api key": s.apiKey, "blob plaintext": blobPlain}
	for k, v := range authzValues {
		secrets[k+" value"] = v
		secrets[k+" normalized"] = revealed[k]
	}
	for i, tok := range tokens {
		secrets[fmt.Sprintf("token %d", i)] = tok
	}
	for name, data := range map[string][]byte{"audit log": logData, "server log": s.logs.Bytes()} {
		for what, v := range secrets {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%s contains the %s", name, what)
			}
		}
	}

	// Editing, deleting or reordering any line fails verification.
	lines := bytes.SplitAfter(bytes.TrimSuffix(logData, []byte("\n")), []byte("\n"))
	for i := range lines {
		edited := append([][]byte{}, lines...)
		b := bytes.Clone(lines[i])
		j := bytes.Index(b, []byte(`"time":"`)) + len(`"time":"`) + 3 // a digit of the year
		b[j] ^= 1
		edited[i] = b
		if _, err := audit.Verify(bytes.NewReader(bytes.Join(edited, nil)), pub); !errors.Is(err, audit.ErrTampered) {
			t.Errorf("line %d edited: %v", i+1, err)
		}
		if i < len(lines)-1 {
			del := append(append([][]byte{}, lines[:i]...), lines[i+1:]...)
			if _, err := audit.Verify(bytes.NewReader(bytes.Join(del, nil)), pub); !errors.Is(err, audit.ErrTampered) {
				t.Errorf("line %d deleted: %v", i+1, err)
			}
			sw := append([][]byte{}, lines...)
			sw[i], sw[i+1] = sw[i+1], sw[i]
			if _, err := audit.Verify(bytes.NewReader(bytes.Join(sw, nil)), pub); !errors.Is(err, audit.ErrTampered) {
				t.Errorf("lines %d and %d swapped: %v", i+1, i+2, err)
			}
		}
	}
}

// TestUnwritableAuditLogBlocksReveals: with the audit log on a full disk
// (/dev/full), reveals fail closed with Unavailable and carry no value;
// calls that need no audit keep working; erasure is refused before it
// starts once the log is known to be broken.
func TestUnwritableAuditLogBlocksReveals(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full")
	}
	e := newEnv(t)
	cfg := e.config()
	cfg.Auth.Audit.Path = "/dev/full"
	a, err := startApp(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := ctx(t)
	tok, err := cl.Tokenize(c, "s1", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatalf("tokenize is not audited and must work: %v", err)
	}
	for range 2 {
		res, err := cl.Detokenize(c, "payment", tok[0])
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "audit log unavailable") || res != nil {
			t.Fatalf("detokenize with a broken audit log: %v %+v", err, res)
		}
	}
	blobs, err := cl.Encrypt(c, "s1", "ctx", []byte(blobPlain))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := cl.Decrypt(c, "shipping", "ctx", blobs[0]); status.Code(err) != codes.Unavailable || res != nil {
		t.Fatalf("decrypt with a broken audit log: %v %+v", err, res)
	}
	if _, err := cl.EraseSubject(c, "s1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("erase with a broken audit log: %v", err)
	}
	// The erasure was refused before it started: the subject is intact.
	if res, err := cl.Mask(c, tok[0]); err != nil || res[0].Err != nil {
		t.Fatalf("mask after the refused erase: %v %+v", err, res)
	}
	if !bytes.Contains(e.logs.Bytes(), []byte("audit log write failed")) {
		t.Error("the server log does not say the audit log failed")
	}
}

// TestPolicyReload: a reload (SIGHUP) applies a new policy at once; a bad
// one is refused and the old one stays in force.
func TestPolicyReload(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	tok, err := s.as(t, "setup").Tokenize(c, "s1", client.Field{Kind: "pan", Value: authzValues["pan"]})
	if err != nil {
		t.Fatal(err)
	}
	payments := s.as(t, "payments")
	if _, err := payments.Detokenize(c, "refund", tok[0]); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("before reload: %v", err)
	}
	write := func(p string) {
		if err := os.WriteFile(s.policyFile, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(testPolicy, "purposes: [payment]", "purposes: [payment, refund]", 1))
	if err := s.app.Reload(); err != nil {
		t.Fatal(err)
	}
	if res, err := payments.Detokenize(c, "refund", tok[0]); err != nil || res[0].Value != revealed["pan"] {
		t.Fatalf("after reload: %v %+v", err, res)
	}
	write(strings.Replace(testPolicy, "operations: [detokenize]", "operations: [detokenise]", 1))
	err = s.app.Reload()
	if err == nil || !strings.Contains(err.Error(), `roles.payments[0].operations[0]: unknown operation "detokenise"`) {
		t.Fatalf("bad policy reload: %v", err)
	}
	if res, err := payments.Detokenize(c, "refund", tok[0]); err != nil || res[0].Err != nil {
		t.Fatalf("the old policy must stay in force: %v %+v", err, res)
	}
	if !bytes.Contains(s.logs.Bytes(), []byte("keeping the policy in force")) {
		t.Error("the failed reload is not logged")
	}
}
