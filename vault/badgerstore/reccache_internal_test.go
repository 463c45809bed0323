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
	c := newRecordCache(10 * 100)
	enc := bytes.Repeat([]byte{1}, 100)
	for i := range 50 {
		h := hashOf(0, i)
		_, gen, ok := c.get(&h)
		if ok {
			t.Fatalf("entry %d cached before it was put", i)
		}
		c.put(&h, enc, gen)
		if c.bytes > c.max || int64(len(c.m))*100 != c.bytes {
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
}

// TestRecordCacheBrackets: a reader that read gen before a write's bracket
// opened, or while it is open, stores nothing; an entry is not served
// while a bracket that names it (or no token) is open, and begin drops it.
func TestRecordCacheBrackets(t *testing.T) {
	a, b := hashOf(0, 1), hashOf(0, 2)
	enc := []byte("record")
	for _, tc := range []struct {
		name    string
		bracket *[sha256.Size]byte // nil: a write of unnamed records
		write   func(c *recordCache, h *[sha256.Size]byte)
		keepsB  bool // b's entry, put before the write, is still served
	}{
		{"unnamed, ended", nil, func(c *recordCache, h *[sha256.Size]byte) { c.begin(h); c.end(h) }, false},
		{"unnamed, open", nil, func(c *recordCache, h *[sha256.Size]byte) { c.begin(h) }, false},
		{"token a, ended", &a, func(c *recordCache, h *[sha256.Size]byte) { c.begin(h); c.end(h) }, true},
		{"token a, open", &a, func(c *recordCache, h *[sha256.Size]byte) { c.begin(h) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRecordCache(1 << 20)
			_, gb, _ := c.get(&b)
			c.put(&b, enc, gb)
			_, ga, _ := c.get(&a) // a reader's get, then the write, then its put
			tc.write(c, tc.bracket)
			c.put(&a, enc, ga)
			if _, _, ok := c.get(&a); ok {
				t.Fatal("a read from before the write was cached")
			}
			if _, _, ok := c.get(&b); ok != tc.keepsB {
				t.Fatalf("the other token's entry served: %v, want %v", ok, tc.keepsB)
			}
			// A reader that starts while the bracket is open stores nothing
			// either; after the end, the next one does.
			if c.all+len(c.open) > 0 {
				_, g, _ := c.get(&a)
				c.put(&a, enc, g)
				if _, _, ok := c.get(&a); ok {
					t.Fatal("cached while the write's bracket was open")
				}
				c.end(tc.bracket)
			}
			_, g, _ := c.get(&a)
			c.put(&a, enc, g)
			if _, _, ok := c.get(&a); !ok {
				t.Fatal("not cached after the write ended")
			}
		})
	}
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
		{"PurgeKey", func(t *testing.T, s *Store, sk vault.SubjectKey, _ vault.Record) {
			if _, err := s.ShredSubject(ctx, "ivan", vault.LedgerEntry{}); err != nil {
				t.Fatal(err)
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
