package main

// kek status|rotate|rewrap|retire: rotation epochs by hand (README
// "Rotation epochs"). Wiring only: the work is in client/ and the server.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenvault/tokenvault/client"
)

func kekCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing subcommand: status, rotate, rewrap or retire")
	}
	sub := args[0]
	c := newClientFlagsTimeout("kek "+sub, stderr, time.Hour)
	if err := parseFlags(c.fs, args[1:]); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	return c.call(func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "status":
			st, err := cl.KEKStatus(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "current version: %d\nbackup retention: %s\n", st.Current, st.BackupRetention)
			for _, v := range st.Versions {
				fmt.Fprintf(stdout, "version %d  created %s  subject keys %d\n", v.Version, v.Created.Format(time.RFC3339), v.SubjectKeys)
			}
			return nil
		case "rotate", "rewrap":
			var p *progress
			r, err := cl.RotateKEK(ctx, sub == "rewrap", func(r client.Rotation) {
				if p == nil {
					p = newProgress(stderr, fmt.Sprintf("rewrapping under KEK version %d", r.Version))
				}
				p.update(r.Scanned, r.Total)
			})
			if p != nil {
				p.end()
			}
			if errors.Is(err, client.ErrIncomplete) {
				return errors.New("the server ended the rotation without finishing; run \"tokenvault kek rewrap\" to resume")
			}
			if err != nil {
				return fmt.Errorf("%w (run \"tokenvault kek rewrap\" to resume)", err)
			}
			fmt.Fprintf(stdout, "KEK version %d is current; %d subject keys rewrapped (%d scanned)\n", r.Version, r.Rewrapped, r.Scanned)
			return nil
		case "retire":
			res, err := cl.RetireKEK(ctx)
			if err != nil {
				return err
			}
			if len(res.Retired) == 0 {
				fmt.Fprintf(stdout, "nothing to retire yet (oldest version %d is within the backup retention)\n", res.MinVersion)
				return nil
			}
			fmt.Fprintf(stdout, "retired KEK versions %v; oldest version now %d\n", res.Retired, res.MinVersion)
			return nil
		default:
			return fmt.Errorf("unknown kek subcommand %q (status, rotate, rewrap, retire)", sub)
		}
	})
}
