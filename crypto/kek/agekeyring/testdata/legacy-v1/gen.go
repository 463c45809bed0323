// Command genkr wrote crypto/kek/agekeyring/testdata/legacy-v1 with the
// agekeyring of commit 6978447 (wrapped-key format 1, not bound to
// associated data). Kept for the record; testdata is never built.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
)

func main() {
	dir := os.Args[1]
	ctx := context.Background()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, true)
	if err != nil {
		log.Fatal(err)
	}
	dek := bytes.Repeat([]byte{0x5a}, 32)
	w, err := kr.Wrap(ctx, dek)
	if err != nil {
		log.Fatal(err)
	}
	out := fmt.Sprintf("dek %s\nwrapped %s\n", hex.EncodeToString(dek), hex.EncodeToString(w))
	if err := os.WriteFile(filepath.Join(dir, "wrapped.txt"), []byte(out), 0o644); err != nil {
		log.Fatal(err)
	}
}
