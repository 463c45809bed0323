package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
)

// TestContextFilter: Decrypt refuses, item by item, blobs whose context the
// filter refuses, before looking at the blob or its key (an erased
// subject's blob of a refused context is PermissionDenied, not NotFound),
// and serves the rest of the batch.
func TestContextFilter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	blobs, err := f.v.Encrypt(ctx, "alice", []vault.EncryptItem{
		{Plaintext: []byte("parcel at the back door"), Context: "orders.address"},
		{Plaintext: []byte("card ending 1111"), Context: "billing.note"},
		{Plaintext: []byte("no context"), Context: ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := f.v.Encrypt(ctx, "bob", []vault.EncryptItem{{Plaintext: []byte("bob's note"), Context: "billing.note"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.v.EraseSubject(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	var asked []string
	fctx := vault.WithContextFilter(ctx, func(c string) bool {
		asked = append(asked, c)
		return c == "orders.address" || c == ""
	})
	res, err := f.v.Decrypt(fctx, []vault.DecryptItem{
		{Blob: blobs[0], Context: "orders.address"},
		{Blob: blobs[1], Context: "billing.note"},
		{Blob: blobs[2], Context: ""},
		{Blob: gone[0], Context: "billing.note"},
		// An allowed context named for another context's blob: the AEAD
		// refuses it, the filter cannot be talked round.
		{Blob: blobs[1], Context: "orders.address"},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || string(res[0].Plaintext) != "parcel at the back door" || res[0].Subject != "alice" {
		t.Fatalf("allowed item: %+v", res[0])
	}
	if res[2].Err != nil || string(res[2].Plaintext) != "no context" {
		t.Fatalf("allowed empty context: %+v", res[2])
	}
	for i, want := range map[int]string{1: "items[1].context", 3: "items[3].context"} {
		var fe *vault.FieldError
		if !errors.Is(res[i].Err, vault.ErrPermissionDenied) || !errors.As(res[i].Err, &fe) || fe.Field != want {
			t.Fatalf("item %d: %v, want PermissionDenied naming %s", i, res[i].Err, want)
		}
		if res[i].Plaintext != nil || res[i].Subject != "" {
			t.Fatalf("denied item %d carries %+v", i, res[i])
		}
	}
	if !errors.Is(res[4].Err, vault.ErrInvalidArgument) || res[4].Plaintext != nil {
		t.Fatalf("blob under another context: %+v", res[4])
	}
	if len(asked) != 5 {
		t.Fatalf("filter asked %d times (%q), want once per item", len(asked), asked)
	}
	// Without a filter, every context is allowed (dev mode, or a policy
	// that names no contexts).
	res, err = f.v.Decrypt(ctx, []vault.DecryptItem{{Blob: blobs[1], Context: "billing.note"}}, "test")
	if err != nil || res[0].Err != nil || string(res[0].Plaintext) != "card ending 1111" {
		t.Fatalf("no filter: %+v %v", res, err)
	}
}
