package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/auth"
)

func TestSessionIdleTimeout(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := newSessions(10 * time.Minute)
	s.now = func() time.Time { return now }
	v := s.create(auth.Identity{Name: "officer", Method: auth.MethodAPIKey})
	req := httptest.NewRequest("GET", "/subject", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})

	now = now.Add(9 * time.Minute)
	se, _, ok := s.get(req)
	if !ok || se.id.Name != "officer" || se.csrf == "" {
		t.Fatal("session lost before its idle timeout")
	}
	// Use moved the deadline: 9 more minutes are fine.
	now = now.Add(9 * time.Minute)
	if _, _, ok := s.get(req); !ok {
		t.Fatal("a used session timed out")
	}
	now = now.Add(10*time.Minute + time.Second)
	if _, _, ok := s.get(req); ok {
		t.Fatal("an idle session was still accepted")
	}
	// And it is gone, not only refused once.
	now = now.Add(-time.Hour)
	if _, _, ok := s.get(req); ok {
		t.Fatal("an expired session came back")
	}

	bad := httptest.NewRequest("GET", "/subject", nil)
	bad.AddCookie(&http.Cookie{Name: sessionCookie, Value: "not-a-session"})
	if _, _, ok := s.get(bad); ok {
		t.Fatal("an unknown cookie was accepted")
	}
}

func TestSessionsDiffer(t *testing.T) {
	s := newSessions(time.Minute)
	a, b := s.create(auth.Identity{Name: "a"}), s.create(auth.Identity{Name: "b"})
	if a == b || len(a) < 43 {
		t.Fatalf("session ids %q and %q", a, b)
	}
}
