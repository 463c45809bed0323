package auth

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// PolicyFileSource holds the current policy loaded from a file and reloads it
// on demand (SIGHUP, or a poll that notices the file changed). A policy
// that fails to load never replaces a good one: the old one stays in force
// and the error is returned for the log.
type PolicyFileSource struct {
	path string
	cur  atomic.Pointer[Policy]

	mu   sync.Mutex // serializes reloads
	last []byte
}

// LoadPolicyFile loads path; an error here is fatal (no policy yet).
func LoadPolicyFile(path string) (*PolicyFileSource, error) {
	s := &PolicyFileSource{path: path}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current is the policy in force.
func (s *PolicyFileSource) Current() *Policy { return s.cur.Load() }

// Path is the policy file.
func (s *PolicyFileSource) Path() string { return s.path }

// Reload re-reads the file. changed is false when its content is the same
// as the policy in force. On error the policy in force is kept.
func (s *PolicyFileSource) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, fmt.Errorf("policy file: %w", err)
	}
	if s.cur.Load() != nil && bytes.Equal(data, s.last) {
		return false, nil
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return false, fmt.Errorf("policy file %s: %w", s.path, err)
	}
	s.cur.Store(p)
	s.last = data
	return true, nil
}
