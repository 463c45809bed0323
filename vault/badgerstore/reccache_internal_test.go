package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault"
)

// TestRecordCacheBound: the cache never holds more bytes than its bound,
// keeps what fits, and refuses encodings above maxCachedRecord.
func TestRecordCacheBound(t *testing.T) {
	enc := bytes.Repeat([]byte{1}, 100)
	c := newRecordCache(10 * cost(enc))
	for i := range 50 {
		h := hashOf(0, i)
		_, gen, ok := c.get(&h)
		if ok {
			t.Fatalf("entry %d cached before it was put", i)
		}
		c.put(&h, enc, gen)
		if c.bytes > c.max || int64(len(c.m))*cost(enc) != c.bytes {
			t.Fatalf("after %d puts: %d entries, %d bytes, bound %d", i+1, len(c.m), c.bytes, c.max)
		}
	}
	if len(c.m) != 10 {
		t.Fatalf("%d entries, want the 10 that fit", len(c.m))
	}
	last := hashOf(0, 49)
	if got, _, ok := c.get(&last); !ok || !bytes.Equal(got, enc) {
		t.Fatal("the entry put last was not kept")
	}
	big := hashOf(1, 0)
	_, gen, _ := c.get(&big)
	c.put(&big, make([]byte, maxCachedRecord+1), gen)
	if _, _, ok := c.get(&big); ok {
		t.Fatal("an encoding above maxCachedRecord was cached")
	}
	if hits, misses := c.stats(); hits != 1 || misses != 52 {
		t.Fatalf("stats %d hits, %d misses; want 1, 52", hits, misses)
	}
	// Entries replaced by ones of other sizes, and evicted: the count of
	// bytes stays the sum of what the map holds.
	c = newRecordCache(5 * cost(enc))
	for i := range 200 {
		h := hashOf(2, i%7)
		_, gen, _ := c.get(&h)
		c.put(&h, make([]byte, 1+(i*37)%300), gen)
		var sum int64
		for _, v := range c.m {
			sum += cost(v)
		}
		if sum != c.bytes || c.bytes > c.max {
			t.Fatalf("after %d puts: entries cost %d, counted %d, bound %d", i+1, sum, c.bytes, c.max)
		}
	}
}

// TestRecordCacheBrackets: a write's bracket drops the entries it may
// change (all of them when it names no token), a reader that read gen
// before the write's bracket opened or while it was open stores nothing,
// and a token stays uncacheable while any bracket that covers it is open.
func TestRecordCacheBrackets(t *testing.T) {
	a, b := hashOf(0, 1), hashOf(0, 2)
	enc := []byte("record")
	put := func(c *recordCache, h *[sha256.Size]byte) {
		_, g, _ := c.get(h)
		c.put(h, enc, g)
	}
	cached := func(c *recordCache, h *[sha256.Size]byte) bool {
		_, _, ok := c.get(h)
		return ok
	}
	for _, tc := range []struct {
		name    string
		bracket *[sha256.Size]byte // nil: a write of unnamed records
		ends    bool               // the write's bracket ends before the reader's put
		keepsB  bool               // b's entry, cached before the write, is still served
	}{
		{"unnamed, ended", nil, true, false},
		{"unnamed, open", nil, false, false},
		{"token a, ended", &a, true, true},
		{"token a, open", &a, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write := func(c *recordCache) {
				c.begin(tc.bracket)
				if tc.ends {
					c.end(tc.bracket)
				}
			}
			// Entries cached before the write.
			c := newRecordCache(1 << 20)
			put(c, &a)
			put(c, &b)
			if !cached(c, &a) || !cached(c, &b) {
				t.Fatal("not cached")
			}
			write(c)
			if cached(c, &a) {
				t.Fatal("the written token's entry was served after the write began")
			}
			if cached(c, &b) != tc.keepsB {
				t.Fatalf("the other token's entry served: %v, want %v", !tc.keepsB, tc.keepsB)
			}

			// A reader whose read may predate the commit.
			c = newRecordCache(1 << 20)
			_, ga, _ := c.get(&a)
			write(c)
			c.put(&a, enc, ga)
			if cached(c, &a) {
				t.Fatal("a read from before the write was cached")
			}
			if !tc.ends {
				put(c, &a) // a reader that starts while the bracket is open
				if cached(c, &a) {
					t.Fatal("cached while the write's bracket was open")
				}
				_, g, _ := c.get(&a) // ... and one whose put comes after the end
				c.end(tc.bracket)
				c.put(&a, enc, g)
				if cached(c, &a) {
					t.Fatal("a read from while the bracket was open was cached after its end")
				}
			}
			put(c, &a)
			if !cached(c, &a) {
				t.Fatal("not cached after the write ended")
			}
		})
	}
	t.Run("nested", func(t *testing.T) {
		c := newRecordCache(1 << 20)
		c.begin(nil)
		c.begin(&a)
		c.end(nil)
		if put(c, &a); cached(c, &a) {
			t.Fatal("cached while a named bracket was open")
		}
		if put(c, &b); !cached(c, &b) {
			t.Fatal("another token not cached once the unnamed bracket ended")
		}
		c.end(&a)
		if put(c, &a); !cached(c, &a) {
			t.Fatal("not cached after both brackets ended")
		}
	})
}

// TestRecordReadAfterEveryChange: a record read twice (the second read
// from the cache) and then changed by each store method that changes or
// deletes records is read as changed: the cache never answers with what
// was there before.
func TestRecordReadAfterEveryChange(t *testing.T) {
	ctx := context.Background()
	later := time.Unix(1700000000, 0).UTC().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, s *Store, sk vault.SubjectKey, r vault.Record)
		gone   bool // the record is gone after the change (else: replaced)
	}{
		{"ReplaceRecord", func(t *testing.T, s *Store, sk vault.SubjectKey, r vault.Record) {
			r.Sealed = bytes.Repeat([]byte{7}, 48)
			r.Expires = later
			if err := s.ReplaceRecord(ctx, "ivan", sk.ID, r); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"DeleteRecord", func(t *testing.T, s *Store, _ vault.SubjectKey, r vault.Record) {
			if err := s.DeleteRecord(ctx, r.Token); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"PurgeExpired", func(t *testing.T, s *Store, _ vault.SubjectKey, _ vault.Record) {
			if n, err := s.PurgeExpired(ctx, later.Add(time.Hour), 10); err != nil || n != 2 {
				t.Fatalf("PurgeExpired = %d, %v; want the 2 expired records", n, err)
			}
		}, true},
		{"purgePrefix", func(t *testing.T, s *Store, sk vault.SubjectKey, _ vault.Record) {
			// PurgeKey's purge of the records alone: the writes after it in
			// PurgeKey would empty the cache too, and hide a purge that
			// did not.
			if n, _, err := s.purgePrefix(ctx, key(pIndex, sk.ID[:]), true); err != nil || n == 0 {
				t.Fatalf("purgePrefix = %d, %v", n, err)
			}
		}, true},
		{"PurgeKey", func(t *testing.T, s *Store, sk vault.SubjectKey, r vault.Record) {
			if _, err := s.ShredSubject(ctx, "ivan", vault.LedgerEntry{}); err != nil {
				t.Fatal(err)
			}
			// The shred emptied the cache: cache the record again (it is
			// still stored, under a key that is gone) before the purge.
			hits, _ := s.records.stats()
			for range 2 {
				if _, err := s.Record(ctx, r.Token); err != nil {
					t.Fatal(err)
				}
			}
			if h, _ := s.records.stats(); h != hits+1 {
				t.Fatal("the shredded subject's record was not cached again")
			}
			if _, err := s.PurgeKey(ctx, sk.ID); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sk := openWithKey(t, t.TempDir(), "ivan")
			defer s.Close()
			recs := filterRecords(sk.ID, "c", 2)
			for i := range recs {
				recs[i].Expires = later
			}
			if err := s.PutRecords(ctx, "ivan", sk.ID, recs); err != nil {
				t.Fatal(err)
			}
			hits, _ := s.records.stats()
			for range 2 {
				got, err := s.Record(ctx, recs[0].Token)
				if err != nil || !bytes.Equal(got.Sealed, recs[0].Sealed) {
					t.Fatalf("Record = %v, %v before the change", got.Sealed, err)
				}
				got.Sealed[0] ^= 0xff // the caller's copy, not the cache's
			}
			if h, _ := s.records.stats(); h != hits+1 {
				t.Fatalf("%d cache hits in two reads, want 1", h-hits)
			}
			tc.change(t, s, sk, recs[0])
			for range 2 {
				got, err := s.Record(ctx, recs[0].Token)
				switch {
				case tc.gone && !errors.Is(err, vault.ErrNotFound):
					t.Fatalf("Record after %s = %v, %v; want not found", tc.name, got.Sealed, err)
				case !tc.gone && (err != nil || got.Sealed[0] != 7 || !got.Expires.Equal(later)):
					t.Fatalf("Record after %s = %v, %v, %v; want the replacement", tc.name, got.Sealed, got.Expires, err)
				}
			}
		})
	}
}

// TestRecordCacheRacesReplace: readers read one token while a writer
// replaces its record with numbered versions. A read that starts after
// ReplaceRecord returned never gets an older version, and one that starts
// after DeleteRecord returned gets not found: the cache stores no read
// that a commit overtook. Run under -race by .ci/run.
func TestRecordCacheRacesReplace(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	r := filterRecords(sk.ID, "race", 1)[0]
	version := func(rec vault.Record) uint64 { return binary.BigEndian.Uint64(rec.Sealed) }
	r.Sealed = binary.BigEndian.AppendUint64(nil, 0)
	r.Sealed = append(r.Sealed, make([]byte, 32)...)
	if err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{r}); err != nil {
		t.Fatal(err)
	}
	const versions = 300
	var acked atomic.Uint64 // the last version ReplaceRecord returned for
	var deleted atomic.Bool
	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				want, gone := acked.Load(), deleted.Load()
				got, err := s.Record(ctx, r.Token)
				switch {
				case gone && !errors.Is(err, vault.ErrNotFound):
					errs <- fmt.Errorf("read after the delete returned: %v, %v", got.Sealed, err)
					return
				case gone, errors.Is(err, vault.ErrNotFound) && acked.Load() == versions:
					// The delete may have committed and not returned yet.
				case err != nil:
					errs <- err
					return
				case version(got) < want:
					errs <- fmt.Errorf("read version %d after version %d was acknowledged", version(got), want)
					return
				}
			}
		}()
	}
	for v := uint64(1); v <= versions; v++ {
		r.Sealed = append(binary.BigEndian.AppendUint64(nil, v), make([]byte, 32)...)
		if err := s.ReplaceRecord(ctx, "ivan", sk.ID, r); err != nil {
			t.Fatal(err)
		}
		acked.Store(v)
	}
	if err := s.DeleteRecord(ctx, r.Token); err != nil {
		t.Fatal(err)
	}
	deleted.Store(true)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if hits, _ := s.records.stats(); hits == 0 {
		t.Error("no read was answered from the cache: the race was not tested")
	}
}

// TestRecordCacheSkipsOvertakenRead: a reveal's read that a rectification
// overtakes (it commits, and returns, between the read transaction and
// the put into the cache) is not cached: the next read gets the new
// record. Without the generation check, the old one would be served
// until evicted.
func TestRecordCacheSkipsOvertakenRead(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	r := filterRecords(sk.ID, "over", 1)[0]
	if err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{r}); err != nil {
		t.Fatal(err)
	}
	replaced := r
	replaced.Sealed = bytes.Repeat([]byte{7}, 40)
	var once sync.Once
	s.afterRead = func() {
		once.Do(func() {
			if err := s.ReplaceRecord(ctx, "ivan", sk.ID, replaced); err != nil {
				t.Error(err)
			}
		})
	}
	got, err := s.Record(ctx, r.Token)
	if err != nil || !bytes.Equal(got.Sealed, r.Sealed) {
		t.Fatalf("the overtaken read = %v, %v; want the record as it was", got.Sealed, err)
	}
	for range 2 {
		got, err = s.Record(ctx, r.Token)
		if err != nil || !bytes.Equal(got.Sealed, replaced.Sealed) {
			t.Fatalf("read after the rectification returned = %v, %v; want the replacement", got.Sealed, err)
		}
	}
}

// TestRecordCacheKeptByOtherWrites: writes that change no record
// (restriction, erasure cursors, a purge with nothing due) leave the
// cache alone, and after Close nothing is answered from it.
func TestRecordCacheKeptByOtherWrites(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	r := filterRecords(sk.ID, "kept", 1)[0]
	r.Expires = time.Now().Add(time.Hour) // in the expiry index, not yet due
	if err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{r}); err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		if _, err := s.Record(ctx, r.Token); err != nil {
			t.Fatal(err)
		}
	}
	read()
	for _, w := range []struct {
		name string
		fn   func() error
	}{
		{"SetRestricted", func() error { return s.SetRestricted(ctx, "ivan", time.Unix(1700000000, 0)) }},
		{"RegisterConsumer", func() error { return s.RegisterConsumer(ctx, "crm") }},
		{"PurgeExpired, nothing due", func() error {
			n, err := s.PurgeExpired(ctx, time.Now(), 10)
			if err == nil && n != 0 {
				err = fmt.Errorf("purged %d records, none due", n)
			}
			return err
		}},
	} {
		if err := w.fn(); err != nil {
			t.Fatal(err)
		}
		hits, _ := s.records.stats()
		read()
		if h, _ := s.records.stats(); h != hits+1 {
			t.Errorf("after %s the record was not answered from the cache", w.name)
		}
	}
	s.Close()
	if _, err := s.Record(ctx, r.Token); err == nil {
		t.Fatal("a closed store answered a read (from its cache)")
	}
}

// TestRecordCacheLinearizable (from a review of the cache): one token
// cycles through create, replace, and delete or purge (an update), while
// readers read it. A read that starts after state st was published must
// see a version in [st, end+1] (end: the state published when it returned),
// or, if it finds nothing, one of those states must be an absent one
// (k%3 == 0). It fails within seconds without the generation check.
func TestRecordCacheLinearizable(t *testing.T) {
	ctx := context.Background()
	s, sk := openWithKey(t, t.TempDir(), "ivan")
	defer s.Close()
	base := filterRecords(sk.ID, "lin", 1)[0]
	mk := func(v uint64, exp time.Time) vault.Record {
		r := base
		r.Sealed = append(binary.BigEndian.AppendUint64(nil, v), make([]byte, 32)...)
		r.Expires = exp
		return r
	}
	var state atomic.Uint64
	stop, errs := make(chan struct{}), make(chan error, 16)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st := state.Load()
				got, err := s.Record(ctx, base.Token)
				end := state.Load() + 1
				switch {
				case err == nil:
					if v := binary.BigEndian.Uint64(got.Sealed); v < st || v > end {
						errs <- fmt.Errorf("read version %d in states [%d, %d]", v, st, end)
						return
					}
				case errors.Is(err, vault.ErrNotFound):
					ok := false
					for k := st; k <= end; k++ {
						ok = ok || k%3 == 0
					}
					if !ok {
						errs <- fmt.Errorf("not found in states [%d, %d]", st, end)
						return
					}
				default:
					errs <- err
					return
				}
			}
		}()
	}
	past := time.Unix(1600000000, 0).UTC()
	v := uint64(0)
	for i := range 300 {
		v++
		if err := s.PutRecords(ctx, "ivan", sk.ID, []vault.Record{mk(v, past)}); err != nil {
			t.Fatal(err)
		}
		state.Store(v)
		time.Sleep(200 * time.Microsecond)
		v++
		if err := s.ReplaceRecord(ctx, "ivan", sk.ID, mk(v, past)); err != nil {
			t.Fatal(err)
		}
		state.Store(v)
		time.Sleep(200 * time.Microsecond)
		v++
		if i%2 == 0 {
			if err := s.DeleteRecord(ctx, base.Token); err != nil {
				t.Fatal(err)
			}
		} else if n, err := s.PurgeExpired(ctx, time.Now(), 10); err != nil || n != 1 {
			t.Fatal(n, err)
		}
		state.Store(v)
		time.Sleep(200 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h, _ := s.records.stats(); h == 0 {
		t.Error("no read was answered from the cache: the test tested nothing")
	}
}
