package main

// Token and field-encryption commands: tokenize, detokenize, mask,
// encrypt, decrypt, erase. Wiring only: the work is in client/.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
)

func tokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("tokenize", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	kind := c.fs.String("kind", "", "value kind: pan, ssn, cn-resident-id, national-id, phone, email, iban, bank-account, address, name, generic, card-expiry, card-security-code (volatile: held only in the serving process's memory, burned on first reveal) (required)")
	det := c.fs.Bool("deterministic", false, "same subject+kind+value always gives the same token")
	valid := c.fs.Bool("checksum-valid", false, "make the token pass the validators of its kind: Luhn, MOD 11-2 and real region codes, MOD 97 and national check digits, valid phone numbers (see vault/format/FORMATS.md; default: deliberately invalid)")
	ttl := c.fs.Duration("ttl", 0, "retention: the token expires after this (default: the server's default for the kind)")
	hold := c.fs.String("hold", "", "legal hold class (server config holds): the value survives the subject's erasure until the hold ends")
	values, err := c.parse(args, "VALUE", stdin)
	if err != nil {
		return err
	}
	if err := errors.Join(required("subject", *subject), required("kind", *kind)); err != nil {
		return err
	}
	fields := make([]client.Field, len(values))
	for i, v := range values {
		fields[i] = client.Field{Kind: *kind, Value: v, Deterministic: *det, ChecksumValid: *valid, TTL: *ttl, Hold: *hold}
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		tokens, err := cl.Tokenize(ctx, *subject, fields...)
		if err != nil {
			return err
		}
		for _, t := range tokens {
			fmt.Fprintln(stdout, t)
		}
		return nil
	})
}

// printResults prints each value on its own line; failed items are
// reported on stderr and make the command fail.
func printResults(res []client.Result, what string, stdout, stderr io.Writer) error {
	failed := 0
	for i, r := range res {
		if r.Err != nil {
			s := status.Convert(r.Err)
			fmt.Fprintf(stderr, "%s %d: %s: %s\n", what, i+1, s.Code(), s.Message())
			failed++
			continue
		}
		fmt.Fprintln(stdout, r.Value)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d failed", failed, len(res))
	}
	return nil
}

func detokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("detokenize", stderr)
	purpose := c.fs.String("purpose", "", "why the value is needed, e.g. payment (required)")
	tokens, err := c.parse(args, "TOKEN", stdin)
	if err != nil {
		return err
	}
	if err := required("purpose", *purpose); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Detokenize(ctx, *purpose, tokens...)
		if err != nil {
			return err
		}
		return printResults(res, "token", stdout, stderr)
	})
}

func mask(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("mask", stderr)
	tokens, err := c.parse(args, "TOKEN", stdin)
	if err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Mask(ctx, tokens...)
		if err != nil {
			return err
		}
		return printResults(res, "token", stdout, stderr)
	})
}

func encrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("encrypt", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	bctx := c.fs.String("context", "", `where the blob will be stored, e.g. "orders.shipping_address"; decrypt needs the same`)
	values, err := c.parse(args, "VALUE", stdin)
	if err != nil {
		return err
	}
	if err := required("subject", *subject); err != nil {
		return err
	}
	plain := make([][]byte, len(values))
	for i, v := range values {
		plain[i] = []byte(v)
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		blobs, err := cl.Encrypt(ctx, *subject, *bctx, plain...)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(b))
		}
		return nil
	})
}

func decrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("decrypt", stderr)
	purpose := c.fs.String("purpose", "", "why the value is needed (required)")
	bctx := c.fs.String("context", "", "the context given to encrypt")
	encoded, err := c.parse(args, "BLOB", stdin)
	if err != nil {
		return err
	}
	if err := required("purpose", *purpose); err != nil {
		return err
	}
	blobs := make([][]byte, len(encoded))
	for i, e := range encoded {
		if blobs[i], err = decodeBlob(e); err != nil {
			return fmt.Errorf("BLOB %d: not base64url (as printed by tokenvault encrypt) or standard base64 (as JSON and grpcurl show bytes)", i+1)
		}
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Decrypt(ctx, *purpose, *bctx, blobs...)
		if err != nil {
			return err
		}
		return printResults(res, "blob", stdout, stderr)
	})
}

func erase(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	c := newClientFlags("erase", stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	if err := parseFlags(c.fs, args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		// Not quoted: the stray argument is most likely the subject id.
		return errors.New("unexpected argument: give the subject id with --subject")
	}
	if err := required("subject", *subject); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		r, err := cl.EraseSubject(ctx, *subject)
		if err != nil {
			return err
		}
		if r.Signed != nil { // the signed receipt: save it, check it with "tokenvault receipt verify"
			_, err := stdout.Write(r.Signed)
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"subject_id": r.Subject, "erased_at": r.ErasedAt.Format(time.RFC3339Nano),
			"records_erased": r.Records, "lookups_erased": r.Lookups,
		})
	})
}

// decodeBlob reads a blob in either base64 alphabet, padded or not:
// encrypt prints base64url, but protobuf JSON (grpcurl, for one) shows
// bytes fields in standard base64, and a blob copied from there should
// work too. The alphabets differ only in "+/" versus
// "-_", so at most one of them can match a given string.
func decodeBlob(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}
