package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/config"
)

// addr is a real tokenvault server started for the examples.
var addr string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenvault-client-example")
	if err != nil {
		log.Fatal(err)
	}
	a, err := app.Start(context.Background(), config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}},
		Metrics: config.MetricsConfig{Listen: "off"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Consent: config.ConsentConfig{Purposes: []string{"marketing"}}, // issue16_example_test.go
	})
	if err != nil {
		log.Fatal(err)
	}
	addr = a.Addr()
	code := m.Run()
	a.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func Example() {
	ctx := context.Background()
	c, err := client.Dial(addr) // e.g. "127.0.0.1:7300"
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// An order service stores tokens instead of card numbers and emails.
	tokens, err := c.Tokenize(ctx, "customer-42",
		client.Field{Kind: "pan", Value: "4111 1111 1111 1111"},
		client.Field{Kind: "email", Value: "jane.doe@example.com", Deterministic: true},
	)
	if err != nil {
		log.Fatal(err)
	}
	pan := tokens[0]
	fmt.Println("card token keeps BIN and last 4:", pan[:6], pan[12:], len(pan))

	// A support UI shows masks and never sees the values.
	masks, err := c.Mask(ctx, tokens...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("masked:", masks[0].Value, masks[1].Value)

	// The payment service reveals the card for a stated purpose.
	vals, err := c.Detokenize(ctx, "payment", pan)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revealed:", vals[0].Value)

	// Erasure crypto-shreds the customer's key: every token is dead.
	receipt, err := c.EraseSubject(ctx, "customer-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("erased records:", receipt.Records)
	vals, _ = c.Detokenize(ctx, "payment", pan)
	fmt.Println("after erasure:", vals[0].Err != nil)

	// Output:
	// card token keeps BIN and last 4: 411111 1111 16
	// masked: 411111******1111 j***@example.com
	// revealed: 4111111111111111
	// erased records: 2
	// after erasure: true
}

func ExampleClient_Encrypt() {
	ctx := context.Background()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Field encryption for data kept in the caller's own database. The blob
	// is bound to the subject and to where it is stored.
	blobs, err := c.Encrypt(ctx, "customer-7", "orders.shipping_address", []byte("1 Main St, Springfield"))
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Decrypt(ctx, "shipping", "orders.shipping_address", blobs[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res[0].Value, "/", res[0].Subject)

	// The same blob under another column fails.
	res, _ = c.Decrypt(ctx, "shipping", "orders.billing_address", blobs[0])
	fmt.Println(res[0].Err != nil)
	// Output:
	// 1 Main St, Springfield / customer-7
	// true
}
