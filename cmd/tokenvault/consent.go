package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenvault/tokenvault/client"
)

// consentCmd: tokenvault consent grant|withdraw --subject S --purpose P --source SRC.
func consentCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "grant" && args[0] != "withdraw") {
		return errors.New("missing subcommand: grant or withdraw")
	}
	grant := args[0] == "grant"
	c := newClientFlags("consent "+args[0], stderr)
	subject := c.fs.String("subject", "", "data subject id (required)")
	purpose := c.fs.String("purpose", "", "a purpose the policy declares consent-based (required)")
	source := c.fs.String("source", "", "where consent was given or withdrawn, e.g. signup-form (required)")
	if err := parseFlags(c.fs, args[1:]); err != nil {
		return err
	}
	if err := errors.Join(noArgs(c.fs), required("subject", *subject), required("purpose", *purpose), required("source", *source)); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		op, verb := cl.WithdrawConsent, "withdrawn"
		if grant {
			op, verb = cl.GrantConsent, "granted"
		}
		r, err := op(ctx, *subject, *purpose, *source)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "consent to %q %s at %s (source %q)\n", r.Purpose, verb, r.At.Format(time.RFC3339), r.Source)
		return nil
	})
}
