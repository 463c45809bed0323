package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/tokenvault/tokenvault/internal/auth"
)

// Sessions live in the server's memory only: a restart signs everyone out,
// and the cookie is a random id that means nothing elsewhere.

const (
	sessionCookie = "tv_console"
	// preCookie carries the sign-in form's CSRF token before there is a
	// session (login CSRF: a forged sign-in would put the victim in the
	// attacker's session).
	preCookie = "tv_console_signin"
)

type session struct {
	id   auth.Identity
	csrf string
	last time.Time

	// What the user is looking at (never in a URL), and the cursor of
	// its next page of tokens (never in a page).
	subject string
	next    string
	// The last erasure's signed receipt, for download.
	receipt        []byte
	receiptSubject string
}

type sessions struct {
	mu   sync.Mutex
	m    map[[32]byte]*session // by SHA-256 of the cookie value
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration) *sessions {
	return &sessions{m: map[[32]byte]*session{}, idle: idle, now: time.Now}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for id and returns its cookie value.
func (s *sessions) create(id auth.Identity) string {
	v := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, se := range s.m { // drop idle sessions as new ones come
		if now.Sub(se.last) > s.idle {
			delete(s.m, k)
		}
	}
	s.m[sha256.Sum256([]byte(v))] = &session{id: id, csrf: randomToken(), last: now}
	return v
}

// get returns the request's session, if it has one that is not idle, and
// marks it used. Callers hold no lock on the session: use with (below).
func (s *sessions) get(r *http.Request) (*session, [32]byte, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, [32]byte{}, false
	}
	k := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[k]
	if !ok {
		return nil, k, false
	}
	now := s.now()
	if now.Sub(se.last) > s.idle {
		delete(s.m, k)
		return nil, k, false
	}
	se.last = now
	cp := *se
	return &cp, k, true
}

// update changes the stored session.
func (s *sessions) update(k [32]byte, fn func(*session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se, ok := s.m[k]; ok {
		fn(se)
	}
}

func (s *sessions) drop(k [32]byte) {
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
