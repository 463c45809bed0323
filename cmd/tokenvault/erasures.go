package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
)

// erasuresCmd: tokenvault erasures watch --consumer NAME [--count N].
func erasuresCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "watch" {
		return errors.New("missing subcommand: watch")
	}
	c := newClientFlagsTimeout("erasures watch", stderr, 0)
	consumer := c.fs.String("consumer", "", "consumer name (required; under a policy, one its watch-erasures permission names)")
	count := c.fs.Int("count", 0, "stop after this many events (0: watch until interrupted)")
	if err := parseFlags(c.fs, args[1:]); err != nil {
		return err
	}
	if err := errors.Join(noArgs(c.fs), required("consumer", *consumer)); err != nil {
		return err
	}
	if *count < 0 {
		return errors.New("--count must not be negative")
	}
	cl, err := c.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	// Watching is open-ended: --timeout 0 (the default here) means until
	// interrupted, which is a clean end (an event printed was
	// acknowledged; one not printed comes again next time).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	ctx, done := context.WithCancel(ctx)
	defer done()
	enc := json.NewEncoder(stdout)
	n := 0
	// Retries are said on stderr: a watcher of a server that is down (or
	// a wrong --addr) must not look like one waiting for events.
	retry := client.WatchOptions{OnRetry: func(err error, wait time.Duration) {
		msg := err.Error()
		if s, ok := status.FromError(err); ok {
			msg = s.Code().String() + ": " + s.Message() // as main prints a failure
		}
		fmt.Fprintf(stderr, "tokenvault erasures watch: %s; retrying in %v\n", msg, wait.Round(time.Millisecond))
	}}
	err = cl.WatchErasuresWith(ctx, *consumer, retry, func(ev client.ErasureEvent) error {
		// Written before the callback returns: only a printed event is
		// acknowledged.
		if err := enc.Encode(ev); err != nil {
			return err
		}
		if f, ok := stdout.(interface{ Sync() error }); ok {
			f.Sync()
		}
		if n++; n == *count {
			done()
		}
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
