package vault_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestRotationEpochs walks the backup half of erasure: a "backup" copy of a
// wrapped key taken before rotation stops unwrapping once the old KEK
// version is retired, while live data keeps working throughout.
func TestRotationEpochs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := badgerstore.Open(filepath.Join(dir, "data"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v, err := vault.New(ctx, store, kr, vault.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	var tokens []string
	for i := range 450 { // several scan pages
		toks, err := v.Tokenize(ctx, fmt.Sprintf("subject-%03d", i), []vault.Field{{Kind: format.Name, Value: "Ada Lovelace"}})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, toks[0])
	}
	backup, err := store.SubjectKey(ctx, "subject-007") // what a backup would hold
	if err != nil {
		t.Fatal(err)
	}

	st, err := v.KEKStatus(ctx)
	if err != nil || st.Current != 1 || st.KeysByVersion[1] != 450 {
		t.Fatalf("status before rotation: %+v %v", st, err)
	}
	ver, err := v.RotateKEK(ctx)
	if err != nil || ver != 2 {
		t.Fatalf("rotate = %d, %v", ver, err)
	}

	// Retiring before the rewrap would lose live data: refused.
	now = time.Now().Add(time.Second)
	_, err = v.RetireKEK(ctx, 0)
	if !errors.Is(err, vault.ErrFailedPrecondition) {
		t.Fatalf("retire before rewrap: %v", err)
	}

	// An interrupted rewrap resumes where it left off.
	cctx, cancel := context.WithCancel(ctx)
	_, err = v.RewrapKeys(cctx, func(p vault.RewrapProgress) {
		if p.Scanned >= 200 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rewrap: %v", err)
	}
	st, _ = v.KEKStatus(ctx)
	if st.KeysByVersion[2] != 200 || st.KeysByVersion[1] != 250 {
		t.Fatalf("after interrupted rewrap: %+v", st.KeysByVersion)
	}
	var last vault.RewrapProgress
	p, err := v.RewrapKeys(ctx, func(p vault.RewrapProgress) { last = p })
	if err != nil || p.Scanned != 450 || p.Rewrapped != 250 || last != p {
		t.Fatalf("resumed rewrap = %+v (last progress %+v), %v", p, last, err)
	}
	st, _ = v.KEKStatus(ctx)
	if st.KeysByVersion[2] != 450 || len(st.KeysByVersion) != 1 {
		t.Fatalf("after rewrap: %+v", st.KeysByVersion)
	}

	// Within the backup retention nothing is retired.
	res, err := v.RetireKEK(ctx, 30*24*time.Hour)
	if err != nil || len(res.Retired) != 0 || res.MinVersion != 1 {
		t.Fatalf("retire within retention = %+v, %v", res, err)
	}
	if _, err := kr.Unwrap(ctx, backup.Wrapped, vault.KeyBinding(backup.ID, "subject-007")); err != nil {
		t.Fatalf("backup key within retention: %v", err)
	}
	// Past it, version 1 is destroyed, and with it every backup's copy.
	now = time.Now().Add(31 * 24 * time.Hour)
	res, err = v.RetireKEK(ctx, 30*24*time.Hour)
	if err != nil || res.MinVersion != 2 || len(res.Retired) != 1 || res.Retired[0] != 1 {
		t.Fatalf("retire after retention = %+v, %v", res, err)
	}
	if _, err := kr.Unwrap(ctx, backup.Wrapped, vault.KeyBinding(backup.ID, "subject-007")); !errors.Is(err, kek.ErrInvalidWrapped) {
		t.Fatalf("a backup's wrapped key still unwraps after retirement: %v", err)
	}
	// Live data is intact (with a cold cache: a fresh vault on the same store).
	v2, err := vault.New(ctx, store, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	res2, err := v2.Detokenize(ctx, tokens, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res2 {
		if r.Err != nil || r.Value != "Ada Lovelace" {
			t.Fatalf("token %d after retirement: %+v", i, r)
		}
	}
}
