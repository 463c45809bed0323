package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// TestCLIRightsAndBackup runs the rights, receipt, ledger, backup and
// restore commands against a real serve process.
func TestCLIRightsAndBackup(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	srv := startServe(t, dir, addr)
	t.Setenv("TOKENVAULT_ADDR", addr)
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		_, errOut, code := cli(t, "", args...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("%v: exit %d, stderr %q; want a failure mentioning %q", args, code, errOut, want)
		}
	}
	tokA := strings.TrimSpace(run("", "tokenize", "--subject", "alice", "--kind", "email", "--deterministic", "alice@example.com"))
	tokB := strings.TrimSpace(run("", "tokenize", "--subject", "bob", "--kind", "name", "Bob Builder"))

	// export prints JSON with the tokens and values.
	var ex struct {
		Subject string `json:"subject_id"`
		Tokens  []struct{ Token, Value, Kind string }
	}
	if err := json.Unmarshal([]byte(run("", "export", "--subject", "alice")), &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Subject != "alice" || len(ex.Tokens) != 1 || ex.Tokens[0].Token != tokA || ex.Tokens[0].Value != "alice@example.com" {
		t.Fatalf("export: %+v", ex)
	}
	fails("NotFound: subject_id", "export", "--subject", "nobody")

	run("alice@new.example.com\n", "rectify", "--token", tokA, "-")
	if out := run("", "detokenize", "--purpose", "audit", tokA); out != "alice@new.example.com\n" {
		t.Fatalf("after rectify: %q", out)
	}
	run("", "restrict", "--subject", "alice")
	fails("FailedPrecondition", "detokenize", "--purpose", "audit", tokA)
	run("", "mask", tokA)
	run("", "unrestrict", "--subject", "alice")

	// Backup to an age recipient.
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "backup-identity.txt")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	full := filepath.Join(dir, "full.tvbak")
	if out := run("", "backup", "--quiet", "--to", full, "--recipient", id.Recipient().String()); !strings.Contains(out, "full backup") || !strings.Contains(out, "signed by key") {
		t.Fatalf("backup: %q", out)
	}
	fails("--recipient is required", "backup", "--to", filepath.Join(dir, "x"))
	inc := filepath.Join(dir, "inc.tvbak")
	run("", "tokenize", "--subject", "bob", "--kind", "name", "Robert")
	run("", "backup", "--quiet", "--to", inc, "--recipient", id.Recipient().String(), "--incremental-from", full)

	// Erase with a signed receipt; verify it offline; a tampered one fails.
	rcpt := filepath.Join(dir, "receipt.json")
	os.WriteFile(rcpt, []byte(run("", "erase", "--subject", "alice")), 0o600)
	pub := filepath.Join(dir, "receipt.pub")
	run("", "receipt", "pubkey", "--to", pub)
	if out := run("", "receipt", "verify", rcpt, "--pubkey", pub); !strings.Contains(out, "valid receipt") {
		t.Fatalf("verify: %q", out)
	}
	b, _ := os.ReadFile(rcpt)
	bad := filepath.Join(dir, "tampered.json")
	os.WriteFile(bad, []byte(strings.Replace(string(b), `"alice"`, `"alicf"`, 1)), 0o600)
	fails("INVALID receipt", "receipt", "verify", bad, "--pubkey", pub)

	ledger := filepath.Join(dir, "ledger.jsonl")
	if out := run("", "ledger", "export", "--to", ledger); !strings.Contains(out, "1 erasure ledger entries") {
		t.Fatalf("ledger export: %q", out)
	}
	lb, _ := os.ReadFile(ledger)
	if strings.Contains(string(lb), "alice") {
		t.Fatal("the ledger file names the subject")
	}

	// Restore the pre-erasure backups into a fresh dir, with the ledger
	// from the file and, once more, from the live vault; the backups are
	// verified with the exported public key, then with the signing key
	// file (restore's default, here not in the working directory).
	key := filepath.Join(dir, "keys", "ledger.key")
	signingKey := filepath.Join(dir, "keys", "receipt-signing.pem")
	for i, src := range [][]string{{"--ledger", ledger, "--verify-key", pub}, {"--ledger-from", addr, "--verify-key", signingKey}} {
		target := filepath.Join(dir, "restored"+string(rune('a'+i)))
		out := run("", append([]string{"restore", "--from", full, "--from", inc, "--identity", idFile,
			"--data-dir", target, "--ledger-key", key}, src...)...)
		if !strings.Contains(out, "re-erased 1 subject(s)") {
			t.Fatalf("restore: %q", out)
		}
	}
	fails("not empty", "restore", "--from", full, "--identity", idFile, "--data-dir", filepath.Join(dir, "data"),
		"--ledger-key", key, "--ledger", ledger, "--verify-key", pub)
	// A ledger file with alice's entry deleted is refused, naming the file.
	lines := strings.SplitAfter(string(lb), "\n")
	dropped := filepath.Join(dir, "dropped.jsonl")
	os.WriteFile(dropped, []byte(strings.Replace(lines[0], `"entries":1`, `"entries":0`, 1)+lines[2]), 0o600)
	fails(dropped+": the erasure ledger's MAC does not verify", "restore", "--from", full, "--identity", idFile,
		"--data-dir", filepath.Join(dir, "r4"), "--ledger-key", key, "--ledger", dropped, "--verify-key", pub)
	// A backup signed by another key is refused, also with the legacy flag.
	otherPub := filepath.Join(dir, "other.pub")
	op, _, _ := ed25519.GenerateKey(nil)
	os.WriteFile(otherPub, receipt.MarshalPublicKey(op), 0o644)
	fails("signed by key", "restore", "--from", full, "--identity", idFile, "--data-dir", filepath.Join(dir, "r5"),
		"--ledger-key", key, "--ledger", ledger, "--verify-key", otherPub, "--allow-unauthenticated-legacy")
	// A legacy (v1, unsigned) backup: refused with a hint at the flag, then
	// accepted with it and a warning.
	fb, _ := os.ReadFile(full)
	h, err := backup.HeaderOf(full)
	if err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(dir, "legacy.tvbak")
	os.WriteFile(legacy, append(backup.Header{Since: h.Since, Next: h.Next}.Marshal(), fb[h.Size():]...), 0o600)
	fails("--allow-unauthenticated-legacy", "restore", "--from", legacy, "--identity", idFile, "--data-dir", filepath.Join(dir, "r6"),
		"--ledger-key", key, "--ledger", ledger, "--verify-key", pub)
	out, errOut, code := cli(t, "", "restore", "--from", legacy, "--identity", idFile, "--data-dir", filepath.Join(dir, "r6"),
		"--ledger-key", key, "--ledger", ledger, "--verify-key", pub, "--allow-unauthenticated-legacy")
	if code != 0 || !strings.Contains(out, "re-erased 1 subject(s)") || !strings.Contains(errOut, "unauthenticated legacy file") || !strings.Contains(errOut, legacy) {
		t.Fatalf("legacy restore: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	other, _ := age.GenerateX25519Identity()
	otherFile := filepath.Join(dir, "other.txt")
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)
	fails("cannot decrypt", "restore", "--from", full, "--identity", otherFile, "--data-dir", filepath.Join(dir, "r3"),
		"--ledger-key", key, "--ledger", ledger, "--verify-key", pub)
	srv.stop(t)

	// The restored directory serves: alice stays erased, bob is there.
	addr2 := freeAddr(t)
	startServe(t, dir, addr2, "--data-dir", filepath.Join(dir, "restoreda"))
	t.Setenv("TOKENVAULT_ADDR", addr2)
	fails("NotFound", "detokenize", "--purpose", "audit", tokA)
	if out := run("", "detokenize", "--purpose", "audit", tokB); out != "Bob Builder\n" {
		t.Fatalf("bob after restore: %q", out)
	}
}
