package console

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed sign-ins are throttled, so that the sign-in form is no faster a
// way to guess API keys than the gRPC port (where every refusal is
// audited and rate-limited): each remote host gets a burst of
// signinBurst failures, then one every signinEvery; all hosts together
// signinAllPerSec failures a second, so that many hosts do not guess
// faster either. Only failures count: a successful sign-in gives its
// attempt back.
const (
	signinBurst     = 5
	signinEvery     = 10 * time.Second
	signinAllPerSec = 20
	// signinHosts bounds the hosts tracked; beyond it, idle ones (bucket
	// full again) are dropped, and while none is idle new hosts share the
	// global bucket only.
	signinHosts = 4096
)

type signinThrottle struct {
	now   func() time.Time
	mu    sync.Mutex
	hosts map[string]*rate.Limiter
	all   *rate.Limiter
}

func newSigninThrottle(now func() time.Time) *signinThrottle {
	return &signinThrottle{now: now, hosts: map[string]*rate.Limiter{},
		all: rate.NewLimiter(signinAllPerSec, 2*signinAllPerSec)}
}

// take reserves one attempt for a sign-in from remote (host:port): ok
// false, and how long to wait, if the host or all hosts are out of
// attempts. Reserving before the attempt (not counting after it) keeps
// concurrent attempts within the bucket; ok's caller gives the attempt
// back with refund when the sign-in succeeds.
func (t *signinThrottle) take(remote string) (ok bool, wait time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	h := hostOf(remote)
	l, known := t.hosts[h]
	if !known {
		if len(t.hosts) >= signinHosts {
			for k, v := range t.hosts {
				if v.TokensAt(now) >= signinBurst {
					delete(t.hosts, k)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(signinEvery), signinBurst)
		if len(t.hosts) < signinHosts {
			t.hosts[h] = l
		} // else untracked: the global bucket still bounds it
	}
	if l.TokensAt(now) < 1 {
		return false, l.ReserveN(now, 0).DelayFrom(now) + signinEvery
	}
	if !t.all.AllowN(now, 1) {
		return false, time.Second
	}
	l.AllowN(now, 1)
	return true, 0
}

// refund gives back the attempt a successful sign-in from remote took.
func (t *signinThrottle) refund(remote string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.hosts[hostOf(remote)]; ok && l.TokensAt(now) < signinBurst {
		l.AllowN(now, -1)
	}
	if t.all.TokensAt(now) < 2*signinAllPerSec {
		t.all.AllowN(now, -1)
	}
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
