package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/tokenvault/tokenvault/client"
)

// Consent to a consent-based purpose (declared in the server's policy,
// here in its dev-mode config) gates reveals for that purpose only.
func ExampleClient_GrantConsent() {
	ctx := context.Background()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	tokens, err := c.Tokenize(ctx, "customer-consent", client.Field{Kind: "email", Value: "ann@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	show := func() {
		r, err := c.Detokenize(ctx, "marketing", tokens...)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("marketing:", r[0].Value, errors.Is(r[0].Err, client.ErrConsentRequired))
	}
	show()
	if _, err := c.GrantConsent(ctx, "customer-consent", "marketing", "newsletter-signup"); err != nil {
		log.Fatal(err)
	}
	show()
	if _, err := c.WithdrawConsent(ctx, "customer-consent", "marketing", "unsubscribe-link"); err != nil {
		log.Fatal(err)
	}
	show()
	// Output:
	// marketing:  true
	// marketing: ann@example.com false
	// marketing:  true
}

// A downstream service deletes its copies of every erased subject; an
// event is acknowledged when the callback returns nil.
func ExampleClient_WatchErasures() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Tokenize(ctx, "customer-gone", client.Field{Kind: "email", Value: "gone@example.com"}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.EraseSubject(ctx, "customer-gone"); err != nil {
		log.Fatal(err)
	}
	err = c.WatchErasures(ctx, "example-crm", func(ev client.ErasureEvent) error {
		// Delete ev.Subject's rows and the blobs carrying ev.BlobKeyID
		// here; must be idempotent (an event may come twice).
		if ev.Subject == "customer-gone" {
			fmt.Println("erased:", ev.Subject, "receipt signed:", len(ev.SignedReceipt) > 0)
			cancel() // for the example: stop after this one
		}
		return nil
	})
	fmt.Println(err)
	// Output:
	// erased: customer-gone receipt signed: true
	// context canceled
}
