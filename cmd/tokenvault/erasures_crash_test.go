package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/testfs"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestErasureEventsSurviveKill: the real server process is killed with
// SIGKILL between the delivery of an erasure event and its
// acknowledgement: after the restart the event comes again. Killed after
// the acknowledgement, it never comes again. At the end no file of the
// data directory holds the subject ids.
func TestErasureEventsSurviveKill(t *testing.T) {
	bin, err := exec.LookPath("tokenvault")
	if err != nil || !strings.Contains(bin, "testscript-main") {
		t.Fatalf("tokenvault on PATH is %q (%v), want the copy of this test binary that TestMain installs", bin, err)
	}
	dir := t.TempDir()
	h := &crashHarness{t: t, bin: bin, dir: dir, addr: mustFreeAddr(t),
		tokens: map[string]ackedToken{}, erased: map[string]bool{}, unsure: map[string]bool{}}
	t.Cleanup(func() {
		if h.running {
			h.cmd.Process.Kill()
			<-h.exited
		}
	})
	subjects := []string{"crash-event-subject-a41f", "crash-event-subject-b93c"}
	h.start()
	c := h.dial()
	ctx := context.Background()
	for _, s := range subjects {
		if _, err := c.Tokenize(ctx, s, client.Field{Kind: "email", Value: s + "@example.com"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.EraseSubject(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Delivered, not acknowledged, then the kill.
	if ev := h.firstEvent(c); ev.GetSequence() != 1 || ev.GetSubjectId() != subjects[0] {
		t.Fatalf("first delivery: %v", ev)
	}
	h.kill()
	h.start()
	c = h.dial()
	ev := h.firstEvent(c)
	if ev.GetSequence() != 1 || ev.GetSubjectId() != subjects[0] || len(ev.GetSignedReceipt()) == 0 {
		t.Fatalf("after a kill before the acknowledgement: %v, want event 1 again", ev)
	}
	if _, err := c.Raw().AckErasures(ctx, &pb.AckErasuresRequest{Consumer: "crm", Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	// Acknowledged, then the kill: never again.
	h.kill()
	h.start()
	c = h.dial()
	if ev := h.firstEvent(c); ev.GetSequence() != 2 || ev.GetSubjectId() != subjects[1] {
		t.Fatalf("after a kill after the acknowledgement: %v, want event 2", ev)
	}
	if _, err := c.Raw().AckErasures(ctx, &pb.AckErasuresRequest{Consumer: "crm", Sequence: 2}); err != nil {
		t.Fatal(err)
	}
	h.load1.Close()
	h.stop()
	for _, s := range subjects {
		if hits := testfs.Grep(t, filepath.Join(dir, "data"), []byte(s)); len(hits) > 0 {
			t.Fatalf("subject id %s at rest in %v", s, hits)
		}
	}
}

// dial makes the harness's client (kill closes it).
func (h *crashHarness) dial() *client.Client {
	h.t.Helper()
	c, err := client.Dial(h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.load1 = c
	return c
}

// firstEvent opens a watch as consumer crm and returns its first event
// (the stream is then dropped: nothing is acknowledged).
func (h *crashHarness) firstEvent(c *client.Client) *pb.WatchErasuresResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	stream, err := c.Raw().WatchErasures(ctx, &pb.WatchErasuresRequest{Consumer: "crm"})
	if err != nil {
		h.t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		h.t.Fatalf("watch: %v\n%s", err, h.logTail())
	}
	return ev
}
