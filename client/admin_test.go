package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// brokenAdmin is a server that breaks the stream protocol in the ways the
// client must notice; the real server never does (the examples and
// internal/e2e run against it), so only a stand-in can.
type brokenAdmin struct {
	pb.UnimplementedKeyAdminServer
	pb.UnimplementedBackupAdminServer
	rotate []*pb.RotateKekResponse
	backup []*pb.BackupResponse
	ledger []*pb.ExportErasureLedgerResponse
	err    error // sent after the messages
}

func (b *brokenAdmin) RotateKek(_ *pb.RotateKekRequest, s grpc.ServerStreamingServer[pb.RotateKekResponse]) error {
	for _, m := range b.rotate {
		s.Send(m)
	}
	return b.err
}

func (b *brokenAdmin) Backup(_ *pb.BackupRequest, s grpc.ServerStreamingServer[pb.BackupResponse]) error {
	for _, m := range b.backup {
		s.Send(m)
	}
	return b.err
}

func (b *brokenAdmin) ExportErasureLedger(_ *pb.ExportErasureLedgerRequest, s grpc.ServerStreamingServer[pb.ExportErasureLedgerResponse]) error {
	for _, m := range b.ledger {
		s.Send(m)
	}
	return b.err
}

func serveBroken(t *testing.T, b *brokenAdmin) *client.Client {
	t.Helper()
	gs := grpc.NewServer()
	pb.RegisterKeyAdminServer(gs, b)
	pb.RegisterBackupAdminServer(gs, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return dial(t, lis.Addr().String())
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestAdminStreams: a stream that ends early is ErrIncomplete, a server
// error is a typed *Error, and a malformed ledger is refused.
func TestAdminStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mac := make([]byte, 32)
	entry := []*pb.LedgerEntry{{SubjectHash: make([]byte, 32)}}
	for _, tc := range []struct {
		name string
		srv  brokenAdmin
		call func(c *client.Client) error
		want func(err error) bool
		msg  string
	}{
		{"rotation ends early", brokenAdmin{rotate: []*pb.RotateKekResponse{{Version: 2, Scanned: 1, Total: 5}}},
			func(c *client.Client) error { _, err := c.RotateKEK(ctx, false, nil); return err },
			func(err error) bool { return errors.Is(err, client.ErrIncomplete) }, ""},
		{"rotation fails", brokenAdmin{err: status.Error(codes.Unavailable, "KEK provider down")},
			func(c *client.Client) error { _, err := c.RotateKEK(ctx, true, nil); return err },
			func(err error) bool {
				return errors.Is(err, client.ErrUnavailable) && status.Code(err) == codes.Unavailable
			}, ""},
		{"backup ends early", brokenAdmin{backup: []*pb.BackupResponse{{Chunk: []byte("x")}}},
			func(c *client.Client) error {
				_, err := c.Backup(ctx, []string{"age1"}, 0, new(strings.Builder), nil)
				return err
			},
			func(err error) bool { return errors.Is(err, client.ErrIncomplete) }, ""},
		{"backup refused", brokenAdmin{err: status.Error(codes.PermissionDenied, "no")},
			func(c *client.Client) error {
				_, err := c.Backup(ctx, []string{"age1"}, 0, new(strings.Builder), nil)
				return err
			},
			func(err error) bool { return errors.Is(err, client.ErrPermissionDenied) }, ""},
		{"backup write fails", brokenAdmin{backup: []*pb.BackupResponse{{Chunk: []byte("x")}, {Done: true}}},
			func(c *client.Client) error {
				_, err := c.Backup(ctx, []string{"age1"}, 0, failingWriter{}, nil)
				return err
			},
			func(err error) bool { return err != nil }, "writing the backup: disk full"},
		{"no ledger", brokenAdmin{},
			func(c *client.Client) error { _, err := c.ExportErasureLedger(ctx); return err },
			func(err error) bool { return errors.Is(err, client.ErrIncomplete) }, "no erasure ledger"},
		{"entries after the MAC", brokenAdmin{ledger: []*pb.ExportErasureLedgerResponse{{LedgerKeyId: "k", LedgerMac: mac}, {LedgerKeyId: "k", Entries: entry}}},
			func(c *client.Client) error { _, err := c.ExportErasureLedger(ctx); return err },
			func(err error) bool { return err != nil }, "after the ledger's MAC"},
		{"key id changes", brokenAdmin{ledger: []*pb.ExportErasureLedgerResponse{{LedgerKeyId: "k", Entries: entry}, {LedgerKeyId: "j", LedgerMac: mac}}},
			func(c *client.Client) error { _, err := c.ExportErasureLedger(ctx); return err },
			func(err error) bool { return err != nil }, "changed the ledger key id"},
		{"short MAC", brokenAdmin{ledger: []*pb.ExportErasureLedgerResponse{{LedgerKeyId: "k", LedgerMac: mac[:16]}}},
			func(c *client.Client) error { _, err := c.ExportErasureLedger(ctx); return err },
			func(err error) bool { return err != nil }, "malformed erasure ledger MAC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(serveBroken(t, &tc.srv))
			if !tc.want(err) || !strings.Contains(errString(err), tc.msg) {
				t.Fatalf("err = %v", err)
			}
		})
	}

	// A ledger from a server older than MACed ledgers has no MAC: the
	// restore decides what to do with it, not the client.
	c := serveBroken(t, &brokenAdmin{ledger: []*pb.ExportErasureLedgerResponse{{LedgerKeyId: "k", Entries: entry}}})
	l, err := c.ExportErasureLedger(ctx)
	if err != nil || l.MAC != nil || len(l.Entries) != 1 || l.KeyID != "k" {
		t.Fatalf("legacy ledger: %+v, %v", l, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
