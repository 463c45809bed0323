package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/tokenvault/tokenvault/client"
)

// A checkout tokenizes the whole card at once. The security code's token
// is volatile: the server keeps the code only in memory and forgets it at
// its first reveal (or after an hour, or at a restart).
func ExampleClient_TokenizeCard() {
	ctx := context.Background()
	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	toks, err := c.TokenizeCard(ctx, "shopper-7", client.Card{
		Number: "4111 1111 1111 1111", Expiry: "09/27", SecurityCode: "737", HolderName: "Jane Doe"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(toks.SecurityCode, "tvvol1_"))

	masks, _ := c.Mask(ctx, toks.Number, toks.Expiry, toks.SecurityCode)
	fmt.Println(masks[0].Value, masks[1].Value, masks[2].Value)

	// The payment step reveals the code once...
	code, err := c.DetokenizeOne(ctx, "payment", toks.SecurityCode)
	fmt.Println(code, err)
	// ...and it is gone.
	_, err = c.DetokenizeOne(ctx, "payment", toks.SecurityCode)
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// true
	// 411111******1111 09/27 ***
	// 737 <nil>
	// true
}
