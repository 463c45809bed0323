package main

// Flags and the connection shared by the client commands.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/client"
)

// clientFlags are shared by the client commands.
type clientFlags struct {
	fs      *flag.FlagSet
	addr    string
	timeout time.Duration
	auth    clientAuth
}

func newClientFlags(name string, stderr io.Writer) *clientFlags {
	return newClientFlagsTimeout(name, stderr, 30*time.Second)
}

func newClientFlagsTimeout(name string, stderr io.Writer, timeout time.Duration) *clientFlags {
	c := &clientFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.addr, "addr", envOr("TOKENVAULT_ADDR", "127.0.0.1:7300"), "server address (env TOKENVAULT_ADDR)")
	c.fs.DurationVar(&c.timeout, "timeout", timeout, "deadline for the call")
	c.auth.addFlags(c.fs)
	return c
}

// parse parses flags and requires at least one positional argument.
func (c *clientFlags) parse(args []string, what string, stdin io.Reader) ([]string, error) {
	if err := parseFlags(c.fs, args); err != nil {
		return nil, err
	}
	if c.fs.NArg() == 0 {
		return nil, fmt.Errorf("missing %s", what)
	}
	out := c.fs.Args()
	for i, a := range out {
		if a == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			out[i] = strings.TrimRight(string(b), "\r\n")
		}
	}
	return out, nil
}

func (c *clientFlags) call(fn func(ctx context.Context, cl *client.Client) error) error {
	cl, err := c.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return fn(ctx, cl)
}

func required(name, v string) error {
	if v == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}

// dial connects with the flags' address, TLS and API key.
func (c *clientFlags) dial() (*client.Client, error) {
	opts, err := c.auth.dialOptions()
	if err != nil {
		return nil, err
	}
	return client.Dial(c.addr, opts...)
}
