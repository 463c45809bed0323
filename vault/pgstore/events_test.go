package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// TestEventsInCommitOrder: erasures from two store handles (two
// replicas' pools) at once, with a reader polling meanwhile as a
// consumer would. Every read sees a gapless prefix of the numbers: no
// number ever shows up after a higher one was read (with numbers from a
// sequence, a lower number committing after a higher one would, and a
// consumer reading after its cursor would skip it).
func TestEventsInCommitOrder(t *testing.T) {
	ctx := context.Background()
	s1, db := open(t)
	s2 := openOn(t, db)
	const perWriter, writers = 15, 4 // writers per handle
	total := perWriter * writers * 2
	for i := range total {
		if _, err := s1.CreateSubjectKey(ctx, fmt.Sprintf("co-%03d", i), vault.SubjectKey{ID: vault.KeyID{byte(i), byte(i >> 8), 0xc0}, Wrapped: []byte("w"), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, total+2)
	for w := range writers * 2 {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			for j := range perWriter {
				subj := fmt.Sprintf("co-%03d", w*perWriter+j)
				if _, err := s.ShredErasure(ctx, subj, vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: time.Now()}); err != nil {
					errs <- err
				}
			}
		})
	}
	readerDone := make(chan struct{})
	var polls int
	go func() {
		defer close(readerDone)
		var cursor uint64 // as a consumer reads: after the last seen
		for {
			last := done.Load() // read after the writers ended: the final poll
			// A consumer's read after its cursor.
			page, err := s2.ErasureEvents(ctx, cursor, 1000)
			if err != nil {
				errs <- err
				return
			}
			for _, ev := range page {
				if ev.Seq != cursor+1 {
					errs <- fmt.Errorf("after event %d the reader got %d: a lower number would commit later and be skipped", cursor, ev.Seq)
					return
				}
				cursor = ev.Seq
			}
			// And the whole log: always 1..k.
			all, err := s1.ErasureEvents(ctx, 0, 1000)
			if err != nil {
				errs <- err
				return
			}
			for i, ev := range all {
				if ev.Seq != uint64(i+1) {
					errs <- fmt.Errorf("the log read as %d events has %d at position %d", len(all), ev.Seq, i+1)
					return
				}
			}
			if uint64(len(all)) < cursor {
				errs <- fmt.Errorf("a later read has %d events, an earlier one reached %d", len(all), cursor)
				return
			}
			polls++
			if last {
				if cursor != uint64(total) {
					errs <- fmt.Errorf("the reader saw %d events of %d", cursor, total)
				}
				return
			}
		}
	}()
	wg.Wait()
	done.Store(true)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d polls during %d erasures", polls, total)
}
