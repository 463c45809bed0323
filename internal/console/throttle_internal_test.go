package console

import (
	"testing"
	"time"
)

// TestSigninThrottleBuckets: the throttle per host and its recovery, on an
// injected clock.
func TestSigninThrottleBuckets(t *testing.T) {
	now := time.Unix(1700000000, 0)
	th := newSigninThrottle(func() time.Time { return now })
	for i := 0; i < signinBurst; i++ {
		if ok, _ := th.allowed("10.0.0.1:1234"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
		th.failed("10.0.0.1:1234")
	}
	if ok, wait := th.allowed("10.0.0.1:5555"); ok || wait <= 0 {
		t.Fatalf("after the burst: allowed %v, wait %v; want refused with a wait", ok, wait)
	}
	if ok, _ := th.allowed("10.0.0.2:1234"); !ok {
		t.Fatal("another host is throttled too")
	}
	now = now.Add(signinEvery)
	if ok, _ := th.allowed("10.0.0.1:1234"); !ok {
		t.Fatal("not allowed again after one interval")
	}
}
