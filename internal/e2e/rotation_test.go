package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestRotationKillsOldBackups is the backup half of erasure, end to end:
// a raw copy of the data directory taken before an erasure becomes useless
// once the KEK is rotated, every key rewrapped and the old version retired.
func TestRotationKillsOldBackups(t *testing.T) { withEachKEKOnBadger(t, rotationKillsOldBackups) }

func rotationKillsOldBackups(t *testing.T, e *env) {
	e.retention = time.Millisecond
	a, c := e.start(t)
	cx := ctx(t)
	if _, err := c.Tokenize(cx, "alice", client.Field{Kind: "pan", Value: "4111111111111111"}); err != nil {
		t.Fatal(err)
	}
	kept, err := c.Tokenize(cx, "bob", client.Field{Kind: "pan", Value: "5555555555554444"})
	if err != nil {
		t.Fatal(err)
	}
	a.Stop()
	backup := filepath.Join(t.TempDir(), "backup")
	copyDir(t, e.dataDir, backup) // a raw backup that still holds alice's key

	a, c = e.start(t)
	if _, err := c.EraseSubject(cx, "alice"); err != nil {
		t.Fatal(err)
	}
	adm := c.KeyAdmin()
	stream, err := adm.RotateKek(cx, &pb.RotateKekRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var last *pb.RotateKekResponse
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	if !last.GetDone() || last.GetRewrapped() != 1 || last.GetVersion() != 2 {
		t.Fatalf("rotation ended with %v", last)
	}
	time.Sleep(10 * time.Millisecond) // past the retention
	res, err := adm.RetireKek(cx, &pb.RetireKekRequest{})
	if err != nil || len(res.GetRetiredVersions()) != 1 || res.GetMinVersion() != 2 {
		t.Fatalf("retire = %v, %v", res, err)
	}
	vals, err := c.Detokenize(cx, "p", kept...)
	if err != nil || vals[0].Err != nil {
		t.Fatalf("live data after retirement: %+v %v", vals, err)
	}
	a.Stop()

	// The old backup: the KEK refuses every key in it, so the server will
	// not even start on it.
	cfg := e.config()
	cfg.DataDir = backup
	if _, err := app.Start(cx, cfg); err == nil || !strings.Contains(err.Error(), "cannot unwrap") {
		t.Fatalf("start on a backup from before retirement: %v", err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
