package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
)

// TestVaultOutage stops the real Vault server under a running tokenvault:
// subjects whose keys are cached keep working, anything that needs Vault
// fails promptly with UNAVAILABLE and writes nothing, health reports it,
// and everything recovers when Vault is back, without a restart.
func TestVaultOutage(t *testing.T) {
	e := newVaultEnv(t)
	e.vault.RequireOwned(t)
	a, c := e.start(t)
	cx := ctx(t)
	hc := healthpb.NewHealthClient(dialRaw(t, a.Addr()))
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := hc.Check(cx, &healthpb.HealthCheckRequest{Service: "tokenvault.v1.TokenVault"})
			if err == nil && resp.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health did not become %v: %v %v", want, resp, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHealth(healthpb.HealthCheckResponse_SERVING)

	warm, err := c.Tokenize(cx, "warm", client.Field{Kind: "pan", Value: "4111111111111111"})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := c.Encrypt(cx, "warm", "c", []byte("note"))
	if err != nil {
		t.Fatal(err)
	}

	e.vault.Stop()
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	// Cached subject: everything still works, including new tokens.
	vals, err := c.Detokenize(cx, "p", warm...)
	if err != nil || vals[0].Err != nil || vals[0].Value != "4111111111111111" {
		t.Fatalf("detokenize of a cached subject during the outage: %+v %v", vals, err)
	}
	more, err := c.Tokenize(cx, "warm", client.Field{Kind: "name", Value: "Ada Lovelace"})
	if err != nil {
		t.Fatalf("tokenize for a cached subject during the outage: %v", err)
	}
	dec, _ := c.Decrypt(cx, "p", "c", blob...)
	if dec[0].Err != nil || dec[0].Value != "note" {
		t.Fatalf("decrypt of a cached subject during the outage: %+v", dec[0])
	}

	// A new subject needs Vault: UNAVAILABLE within the call's deadline
	// (a hang would hit this context's deadline instead).
	callCtx, cancel := context.WithTimeout(cx, 15*time.Second)
	defer cancel()
	_, err = c.Tokenize(callCtx, "cold", client.Field{Kind: "email", Value: "cold@example.com"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "unavailable") {
		t.Fatalf("tokenize for a new subject during the outage: %v, want Unavailable", err)
	}
	_, err = c.Encrypt(callCtx, "cold", "c", []byte("x"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("encrypt for a new subject during the outage: %v, want Unavailable", err)
	}
	// Nothing was written for it.
	if _, err := c.EraseSubject(cx, "cold"); status.Code(err) != codes.NotFound {
		t.Fatalf("a failed tokenize left data behind: erase = %v", err)
	}

	e.vault.Restart()
	waitHealth(healthpb.HealthCheckResponse_SERVING)

	cold, err := c.Tokenize(cx, "cold", client.Field{Kind: "email", Value: "cold@example.com"})
	if err != nil {
		t.Fatalf("tokenize after Vault is back: %v", err)
	}
	vals, err = c.Detokenize(cx, "p", append(append(warm, more...), cold...)...)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v.Err != nil {
			t.Fatalf("token %d after recovery: %v", i, v.Err)
		}
	}

	// A cold start (empty cache) after the outage still reads everything:
	// nothing acknowledged during the outage was lost.
	a.Stop()
	_, c2 := e.start(t)
	vals, err = c2.Detokenize(cx, "p", append(append(warm, more...), cold...)...)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v.Err != nil {
			t.Fatalf("token %d after a cold restart: %v", i, v.Err)
		}
	}
}
