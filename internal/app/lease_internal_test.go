package app

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestJobsOnceAcrossReplicas: two replicas (store handles on one
// database) tick the same background job; it runs on one at a time,
// stays with its holder, is renewed while it runs longer than a third
// of the lease, and moves to the other replica once the holder dies.
func TestJobsOnceAcrossReplicas(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, _, err := pgstore.Migrate(ctx, db.DSN); err != nil {
		t.Fatal(err)
	}
	replica := func(holder string) *App {
		s, err := pgstore.Open(ctx, db.DSN, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		cfg := config.Config{}
		cfg.SetDefaults()
		return &App{cfg: cfg, store: s, holder: holder, leaseTTL: time.Second}
	}
	a, b := replica("a"), replica("b")
	var active atomic.Int32
	runs := map[string]*atomic.Int32{"a": {}, "b": {}}
	job := func(r *App, alive context.Context) func(context.Context) {
		return func(ctx context.Context) {
			if active.Add(1) > 1 {
				t.Error("the job runs on two replicas at once")
			}
			runs[r.holder].Add(1)
			// Longer than a third of the lease: only renewal keeps it.
			select {
			case <-time.After(600 * time.Millisecond):
			case <-ctx.Done():
				if alive.Err() == nil { // not the test stopping it
					t.Errorf("replica %s lost its lease while running", r.holder)
				}
			}
			active.Add(-1)
		}
	}
	tick := func(ctx context.Context, r *App, wg *sync.WaitGroup) {
		defer wg.Done()
		for ctx.Err() == nil {
			r.once(ctx, "expiry-purge", job(r, ctx))
			time.Sleep(20 * time.Millisecond)
		}
	}
	actx, killA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	var wa, wb sync.WaitGroup
	wa.Add(1)
	wb.Add(1)
	go tick(actx, a, &wa)
	go tick(bctx, b, &wb)
	for runs["a"].Load()+runs["b"].Load() < 4 {
		time.Sleep(50 * time.Millisecond)
	}
	first, other := "a", "b"
	if runs["b"].Load() > 0 {
		first, other = "b", "a"
	}
	if runs[other].Load() != 0 {
		t.Fatalf("the job moved between live replicas: a ran %d, b ran %d", runs["a"].Load(), runs["b"].Load())
	}
	// The holder dies (stops ticking and renewing, releases nothing).
	if first == "a" {
		killA()
		wa.Wait()
	} else {
		stopB()
		wb.Wait()
	}
	for runs[other].Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	killA()
	stopB()
	wa.Wait()
	wb.Wait()
}
