package console

import (
	"sync"
	"testing"
	"time"
)

// TestSigninThrottleBuckets: the throttle per host and overall, its
// recovery (injected clock), refunds of successful sign-ins, and that
// concurrent attempts cannot exceed the burst (attempts are reserved
// before they are tried).
func TestSigninThrottleBuckets(t *testing.T) {
	now := time.Unix(1700000000, 0)
	th := newSigninThrottle(func() time.Time { return now })
	for i := 0; i < signinBurst; i++ {
		if ok, _ := th.take("10.0.0.1:1234"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if ok, wait := th.take("10.0.0.1:5555"); ok || wait <= 0 {
		t.Fatalf("after the burst: allowed %v, wait %v; want refused with a wait", ok, wait)
	}
	if ok, _ := th.take("10.0.0.2:1234"); !ok {
		t.Fatal("another host is throttled too")
	}
	now = now.Add(signinEvery)
	if ok, _ := th.take("10.0.0.1:1234"); !ok {
		t.Fatal("not allowed again after one interval")
	}

	// Successful sign-ins give their attempt back: never throttled.
	for i := 0; i < 3*signinBurst; i++ {
		if ok, _ := th.take("10.0.0.3:1"); !ok {
			t.Fatalf("successful sign-in %d throttled", i+1)
		}
		th.refund("10.0.0.3:1")
	}

	// Concurrent attempts from one host: at most the burst get through.
	var mu sync.Mutex
	passed := 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := th.take("10.0.0.4:1"); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if passed != signinBurst {
		t.Fatalf("%d of 50 concurrent attempts passed, want the burst of %d", passed, signinBurst)
	}
}
