package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/pgstore"
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

// TestTrimRacesRegistration: trims on one store handle while a consumer
// acknowledges event after event, and new consumers register on the
// other handle meanwhile. The invariant: no event is deleted that some
// registered consumer has not acknowledged, so every consumer, right
// after RegisterConsumer returned with cursor k, reads after its cursor
// exactly the events k+1 … last, without a gap. (A trim that read the
// cursors before the registration committed and deleted after it would
// remove events after the newcomer's cursor.)
func TestTrimRacesRegistration(t *testing.T) {
	ctx := context.Background()
	s1, db := open(t)
	s2 := openOn(t, db)
	const events = 200
	for i := range events {
		subj := fmt.Sprintf("tr-%03d", i)
		if _, err := s1.CreateSubjectKey(ctx, subj, vault.SubjectKey{ID: vault.KeyID{byte(i), byte(i >> 8), 0x7e}, Wrapped: []byte("w"), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := s1.ShredErasure(ctx, subj, vault.LedgerEntry{}, vault.ErasureEvent{ErasedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.RegisterConsumer(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Nothing is past the retention: only acknowledged events go.
	never := time.Unix(0, 0)
	for _, s := range []*pgstore.Store{s1, s2} {
		wg.Go(func() {
			for !done.Load() {
				if _, err := s.TrimErasureEvents(ctx, never); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Registrations so far, read by the acknowledger: on a busy machine
	// the 200 acknowledgements could otherwise all be over before the
	// second registration, and the race would go untested.
	var registered atomic.Int64
	wg.Go(func() {
		defer done.Store(true)
		for i := uint64(1); i <= events; i++ {
			// The last acknowledgement waits for a few registrations (or
			// for the registering loop to have stopped on a failure).
			for i == events && registered.Load() < 3 && !done.Load() {
				time.Sleep(time.Millisecond)
			}
			if err := s1.AckErasures(ctx, "base", i); err != nil {
				errs <- err
				return
			}
		}
	})
	// Fails after stopping the goroutines, which use the stores.
	var fail error
	for fail == nil && !done.Load() {
		fail = func() error {
			c := fmt.Sprintf("late-%d", registered.Add(1)-1)
			if err := s2.RegisterConsumer(ctx, c); err != nil {
				return err
			}
			cursors, err := s2.Consumers(ctx)
			if err != nil {
				return err
			}
			k := cursors[c]
			page, err := s2.ErasureEvents(ctx, k, events)
			if err != nil {
				return err
			}
			if uint64(len(page)) != events-k || len(page) > 0 && (page[0].Seq != k+1 || page[len(page)-1].Seq != events) {
				first := uint64(0)
				if len(page) > 0 {
					first = page[0].Seq
				}
				return fmt.Errorf("consumer %s registered with cursor %d reads %d events from %d: events it never acknowledged were deleted", c, k, len(page), first)
			}
			// Caught up: it no longer holds back the trims.
			return s2.AckErasures(ctx, c, events)
		}()
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	if fail != nil {
		t.Fatal(fail)
	}
	for err := range errs {
		t.Fatal(err)
	}
	n := registered.Load()
	if n < 2 {
		t.Fatalf("only %d registrations ran during the trims", n)
	}
	t.Logf("%d registrations during the trims", n)
}
