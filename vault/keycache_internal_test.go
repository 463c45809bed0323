package vault

import (
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

func testKeys(t *testing.T) *subjectKeys {
	t.Helper()
	dek, err := aead.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Zero()
	ks, err := deriveKeys(dek.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestCacheGeneration: what a request read from the store before an
// invalidation (erasure, restriction) is used by that request but never
// cached, so a later request cannot see the stale key; what was read after
// it is cached.
func TestCacheGeneration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newKeyCache(10, time.Minute, func() time.Time { return now })
	sk := SubjectKey{ID: KeyID{1}}

	gen := c.generation()          // request A reads the store...
	c.invalidate("alice", KeyID{}) // ...the subject is erased meanwhile...
	got := c.add("alice", sk, testKeys(t), gen)
	if got.keys == nil || got.id != sk.ID || got.subject != "alice" {
		t.Fatalf("stale add did not give the request its keys: %+v", got)
	}
	if _, ok := c.bySubjectID("alice"); ok {
		t.Fatal("a key read before the invalidation was cached by subject")
	}
	if _, ok := c.byKeyID(sk.ID); ok {
		t.Fatal("a key read before the invalidation was cached by id")
	}
	got.release()

	fresh := c.add("alice", sk, testKeys(t), c.generation())
	fresh.release()
	hit, ok := c.bySubjectID("alice")
	if !ok || hit.id != sk.ID {
		t.Fatal("a key read after the invalidation was not cached")
	}
	hit.release()

	// Restriction is part of the entry: byKeyID answers it without a
	// store read, and invalidation drops it.
	c.invalidate("alice", KeyID{})
	r := c.add("alice", SubjectKey{ID: sk.ID, Restricted: now}, testKeys(t), c.generation())
	r.release()
	if e, ok := c.byKeyID(sk.ID); !ok || !e.restricted.Equal(now) || e.subject != "alice" {
		t.Fatalf("entry by id = %+v, %v", e, ok)
	} else {
		e.release()
	}

	// Expiry still applies.
	now = now.Add(2 * time.Minute)
	if _, ok := c.bySubjectID("alice"); ok {
		t.Fatal("expired entry returned")
	}
	if c.len() != 0 {
		t.Fatalf("len = %d after expiry", c.len())
	}
}

// TestCacheNewKeyReplacesOld: a subject's new key (after an erasure this
// cache did not see, e.g. over a shared store) replaces the old one in the
// subject index instead of leaving both.
func TestCacheNewKeyReplacesOld(t *testing.T) {
	c := newKeyCache(10, time.Minute, time.Now)
	c.add("bob", SubjectKey{ID: KeyID{1}}, testKeys(t), c.generation()).release()
	c.add("bob", SubjectKey{ID: KeyID{2}}, testKeys(t), c.generation()).release()
	if c.len() != 1 {
		t.Fatalf("len = %d, want 1", c.len())
	}
	e, ok := c.bySubjectID("bob")
	if !ok || e.id != (KeyID{2}) {
		t.Fatalf("by subject = %+v, %v", e, ok)
	}
	e.release()
	if _, ok := c.byKeyID(KeyID{1}); ok {
		t.Fatal("old key still cached by id")
	}
}

// TestCacheRelease: an acquisition is released once however often its
// copies are released (an evicted entry's keys are zeroed by the last
// one, not before), the zero cached releases as a no-op, and a hit costs
// one allocation (a closure over a sync.Once was two).
func TestCacheRelease(t *testing.T) {
	c := newKeyCache(1, time.Minute, time.Now)
	a := c.add("alice", SubjectKey{ID: KeyID{1}}, testKeys(t), c.generation())
	b, ok := c.byKeyID(KeyID{1})
	if !ok {
		t.Fatal("not cached")
	}
	c.add("bob", SubjectKey{ID: KeyID{2}}, testKeys(t), c.generation()).release() // evicts alice
	copyOfA := a
	a.release()
	copyOfA.release() // the same acquisition: must not release b's reference
	if _, err := a.keys.record.MAC([]byte("x")); err != nil {
		t.Fatal("an evicted entry's keys were zeroed while still held")
	}
	b.release()
	if _, err := b.keys.record.MAC([]byte("x")); err == nil {
		t.Fatal("the evicted entry's keys were not zeroed by the last release")
	}
	cached{}.release()

	if n := testing.AllocsPerRun(100, func() {
		h, _ := c.byKeyID(KeyID{2})
		h.release()
	}); n > 1 {
		t.Fatalf("a cache hit: %v allocations, want 1", n)
	}
}
