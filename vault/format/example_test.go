package format_test

import (
	"crypto/rand"
	"fmt"

	"github.com/tokenvault/tokenvault/vault/format"
)

func Example() {
	v, err := format.Normalize(format.PAN, "4111 1111 1111 1111")
	if err != nil {
		panic(err)
	}
	tok, err := format.Token(format.PAN, v, format.Options{}, rand.Reader)
	if err != nil {
		panic(err)
	}
	fmt.Println(v)
	fmt.Println(format.Mask(format.PAN, v))
	fmt.Println(len(tok) == len(v), tok[:6] == v[:6], tok[12:] == v[12:])

	_, err = format.Normalize(format.PAN, "4111 1111 1111")
	fmt.Println(err)
	// Output:
	// 4111111111111111
	// 411111******1111
	// true true true
	// format: invalid pan: must be 13-19 digits
}

func ExampleMask() {
	for _, c := range []struct {
		kind  format.Kind
		value string
	}{
		{format.SSN, "123-45-6789"},
		{format.Phone, "+8613800138034"},
		{format.Email, "John.Smith@example.com"},
		{format.IBAN, "DE89370400440532013000"},
		{format.Name, "John Smith"},
	} {
		fmt.Println(format.Mask(c.kind, c.value))
	}
	// Output:
	// ***-**-6789
	// +86*********34
	// J***@example.com
	// DE****************3000
	// J*** S****
}
