package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"time"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/client"
)

func ExampleClient_RotateKEK() {
	// A rotation rewraps every subject key: give it a deadline to match.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Tokenize(ctx, "customer-9", client.Field{Kind: "name", Value: "Ada Lovelace"}); err != nil {
		log.Fatal(err)
	}

	before, err := c.KEKStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	updates := 0
	done, err := c.RotateKEK(ctx, false, func(r client.Rotation) {
		updates++ // e.g. draw a progress bar from r.Scanned and r.Total
	})
	if err != nil {
		// Resume with c.RotateKEK(ctx, true, ...): keys already rewrapped
		// are skipped.
		log.Fatal(err)
	}
	fmt.Println("new version current:", done.Version == before.Current+1)
	fmt.Println("every key rewrapped:", done.Scanned == done.Total && done.Rewrapped == done.Total, updates > 0)

	after, err := c.KEKStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("old version still held:", len(after.Versions) == len(before.Versions)+1)
	fmt.Println("keys under the old version:", after.Versions[len(after.Versions)-2].SubjectKeys)

	// The old version is kept while backups made under it are kept (the
	// server's kek.backup_retention, 30 days by default).
	r, err := c.RetireKEK(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retired:", r.Retired, "backup retention:", after.BackupRetention)
	// Output:
	// new version current: true
	// every key rewrapped: true true
	// old version still held: true
	// keys under the old version: 0
	// retired: [] backup retention: 720h0m0s
}

func ExampleClient_Backup() {
	ctx := context.Background()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The backup is encrypted to an age recipient whose identity the vault
	// never sees; keep the identity offline.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		log.Fatal(err)
	}
	var full bytes.Buffer
	end, err := c.Backup(ctx, []string{id.Recipient().String()}, 0, &full, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed:", len(end.Signature), "bytes by key", len(end.SigningKeyID), "hex digits")
	fmt.Println("payload written:", end.Bytes == int64(full.Len()), full.Len() > 0)

	// The next backup takes only what changed since this one.
	if _, err := c.Tokenize(ctx, "customer-10", client.Field{Kind: "email", Value: "grace@example.com"}); err != nil {
		log.Fatal(err)
	}
	var inc bytes.Buffer
	next, err := c.Backup(ctx, []string{id.Recipient().String()}, end.NextSince, &inc, func(read, total int64) {
		// progress: store bytes read of about total
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("incremental moves on:", next.NextSince > end.NextSince)
	// Output:
	// signed: 64 bytes by key 16 hex digits
	// payload written: true true
	// incremental moves on: true
}

func ExampleClient_ExportErasureLedger() {
	ctx := context.Background()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Tokenize(ctx, "customer-11", client.Field{Kind: "name", Value: "Alan Turing"}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.EraseSubject(ctx, "customer-11"); err != nil {
		log.Fatal(err)
	}
	// The ledger names erased subjects by keyed hash only; a restore
	// re-erases each of them from an older backup.
	l, err := c.ExportErasureLedger(ctx)
	if err != nil {
		log.Fatal(err)
	}
	e := l.Entries[0]
	fmt.Println("entries:", len(l.Entries) > 0, "hash:", len(e.SubjectHash), "bytes, erased at a time:", !e.ErasedAt.IsZero())
	fmt.Println("MAC:", len(l.MAC), "bytes under key", l.KeyID != "")
	// Output:
	// entries: true hash: 32 bytes, erased at a time: true
	// MAC: 32 bytes under key true
}
