package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// smallFS mounts a tmpfs of size bytes for the test and unmounts it at
// cleanup. A tmpfs reproduces a full disk faithfully for badger: a write
// through a memory-mapped file into space the filesystem does not have is
// a SIGBUS there too. It needs root: without it the test is skipped
// locally and fails under CI=true, where it is mandatory.
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tokenvault-test", dir).CombinedOutput()
	if err != nil {
		msg := "cannot mount a small tmpfs (" + strings.TrimSpace(string(out)) + "): run as root, e.g. sudo go test -run DiskFull ./internal/e2e/"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill allocates a filler file in dir so that leave bytes stay free (or
// fewer, at block granularity), and returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n := freeBytes(t, dir) - leave
	if n <= 0 {
		t.Fatalf("fill: only %d bytes free, wanted to leave %d", freeBytes(t, dir), leave)
	}
	// Removed before the servers stop (cleanups run last first), also
	// when the test fails: badger flushes its memtable when it closes.
	t.Cleanup(func() { os.Remove(path) })
	if err := syscall.Fallocate(int(f.Fd()), 0, st.Size(), n); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	return path
}

func checkHealth(t *testing.T, cx context.Context, a *app.App, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	hc := healthpb.NewHealthClient(dialRaw(t, a.Addr()))
	// The health status follows the free space within a second or so:
	// poll until it shows, bounded by cx.
	for {
		resp, err := hc.Check(cx, &healthpb.HealthCheckRequest{Service: "tokenvault.v1.TokenVault"})
		if err == nil && resp.GetStatus() == want {
			return
		}
		if cx.Err() != nil {
			t.Fatalf("gRPC health = %v, %v; want %v", resp, err, want)
		}
		select {
		case <-cx.Done():
		case <-a.Done():
			t.Fatal("the server stopped")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestDiskFull fills the data directory's filesystem under tokenize load
// (issue 14, defect 1): the server must refuse writes with
// RESOURCE_EXHAUSTED / STORAGE_FULL instead of dying of a SIGBUS in
// badger, keep revealing, say why in /readyz and the gRPC health, and
// take writes again once space is freed, without a restart. Then the
// audit log fills the disk (reveals fail closed, the process lives), and
// a start on a full disk is a clear error.
func TestDiskFull(t *testing.T) {
	reserve := badgerstore.DefaultDiskReserve()
	mnt := smallFS(t, reserve+96<<20)
	e := newEnv(t)
	e.dataDir = filepath.Join(mnt, "data") // the audit log goes beside it, on the same filesystem
	a, c := e.start(t)
	cx := ctx(t)

	before, err := c.Tokenize(cx, "subject-before", client.Field{Kind: "email", Value: "before@example.com"})
	if err != nil {
		t.Fatal(err)
	}

	// Leave a little more than the reserve free, then tokenize big values
	// until the store refuses. The bound is past all the free space: a
	// store without admission dies of SIGBUS before it is reached.
	filler := fill(t, mnt, reserve+16<<20)
	const fields, valueLen = 16, 16 << 10
	maxCalls := int(freeBytes(t, mnt)/(fields*valueLen)) + 64
	var refused error
	for i := 0; i < maxCalls && refused == nil; i++ {
		fs := make([]client.Field, fields)
		for j := range fs {
			fs[j] = client.Field{Kind: "generic", Value: randomLetters(valueLen)}
		}
		if _, err := c.Tokenize(cx, "subject-load", fs...); err != nil {
			refused = err
		}
	}
	if refused == nil {
		t.Fatalf("%d tokenize calls of %d KiB filled the disk and none was refused", maxCalls, fields*valueLen>>10)
	}
	if !errors.Is(refused, client.ErrStorageFull) || status.Code(refused) != codes.ResourceExhausted ||
		!strings.Contains(refused.Error(), "store: disk full") {
		t.Fatalf("tokenize on a full disk: %v; want RESOURCE_EXHAUSTED (STORAGE_FULL) \"store: disk full\"", refused)
	}
	var ce *client.Error
	if !errors.As(refused, &ce) || ce.Reason != errinfo.StorageFull {
		t.Fatalf("reason = %+v, want %s", ce, errinfo.StorageFull)
	}
	select {
	case err := <-a.Done():
		t.Fatalf("the server stopped: %v", err)
	default:
	}

	// Reads go on; health says why writes are refused.
	if got, err := c.Detokenize(cx, "support-ticket", before...); err != nil || got[0].Err != nil || got[0].Value != "before@example.com" {
		t.Fatalf("reveal on a full disk: %+v, %v", got, err)
	}
	if code, body := httpGet(t, "http://"+a.MetricsAddr()+"/readyz"); code != 503 || !strings.Contains(body, "store: disk full") {
		t.Fatalf("/readyz on a full disk = %d %q", code, body)
	}
	checkHealth(t, cx, a, healthpb.HealthCheckResponse_NOT_SERVING)
	if _, body := httpGet(t, "http://"+a.MetricsAddr()+"/metrics"); !strings.Contains(body, "tokenvault_store_disk_full 1") {
		t.Errorf("/metrics does not show tokenvault_store_disk_full 1")
	}

	// Space freed: writes work again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after, err := c.Tokenize(cx, "subject-after", client.Field{Kind: "email", Value: "after@example.com"})
	if err != nil {
		t.Fatalf("tokenize after space was freed: %v", err)
	}
	checkHealth(t, cx, a, healthpb.HealthCheckResponse_SERVING)
	if code, body := httpGet(t, "http://"+a.MetricsAddr()+"/readyz"); code != 200 {
		t.Fatalf("/readyz after space was freed = %d %q", code, body)
	}

	// A restart: the audit log signs a checkpoint when it closes (as a
	// long-running server does every checkpoint_interval). A new log that
	// fails before its first checkpoint cannot be verified at the next
	// start and needs --audit-allow-unverified.
	a.Stop()
	a, c = e.start(t)

	// The audit log fills the disk: audited calls fail closed (the audit
	// log's failure is sticky until a restart), and the process lives.
	filler = fill(t, mnt, 0)
	var revealErr error
	for i := 0; i < 64 && revealErr == nil; i++ {
		var got []client.Result
		got, revealErr = c.Detokenize(cx, "support-ticket", after...)
		if revealErr == nil && got[0].Err != nil {
			revealErr = got[0].Err
		}
	}
	if !errors.Is(revealErr, client.ErrUnavailable) {
		t.Fatalf("reveal with a full audit log: %v; want UNAVAILABLE (audit log unavailable)", revealErr)
	}
	select {
	case err := <-a.Done():
		t.Fatalf("the server stopped: %v", err)
	default:
	}
	// Free the space before stopping: badger flushes its memtable when it
	// closes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	a.Stop()

	// A start on a full disk is a clear error, not a crash.
	filler = fill(t, mnt, 1<<20)
	a, err = app.Start(context.Background(), e.config())
	if err == nil {
		os.Remove(filler)
		a.Stop()
	}
	if err == nil || !errors.Is(err, vault.ErrStorageFull) || !strings.Contains(err.Error(), "store: disk full") {
		t.Fatalf("start on a full disk: %v; want an error saying \"store: disk full\"", err)
	}
	t.Logf("start on a full disk: %v", err)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	// After the restart, with space, everything written before is there.
	_, c = e.start(t)
	got, err := c.Detokenize(cx, "support-ticket", before[0], after[0])
	if err != nil || got[0].Value != "before@example.com" || got[1].Value != "after@example.com" {
		t.Fatalf("reveal after restart: %+v, %v", got, err)
	}
}

func randomLetters(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}
