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
// faster either. Only failures count: signing in never slows anyone.
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

// allowed reports whether a sign-in from remote (host:port) may be tried
// now, and if not, how long until it may.
func (t *signinThrottle) allowed(remote string) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.hosts[hostOf(remote)]; ok && l.TokensAt(now) < 1 {
		return false, l.ReserveN(now, 0).DelayFrom(now) + signinEvery
	}
	if t.all.TokensAt(now) < 1 {
		return false, time.Second
	}
	return true, 0
}

// failed counts a failed sign-in from remote.
func (t *signinThrottle) failed(remote string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all.AllowN(now, 1)
	h := hostOf(remote)
	l, ok := t.hosts[h]
	if !ok {
		if len(t.hosts) >= signinHosts {
			for k, v := range t.hosts {
				if v.TokensAt(now) >= signinBurst {
					delete(t.hosts, k)
				}
			}
		}
		if len(t.hosts) >= signinHosts {
			return
		}
		l = rate.NewLimiter(rate.Every(signinEvery), signinBurst)
		t.hosts[h] = l
	}
	l.AllowN(now, 1)
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
