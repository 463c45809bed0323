package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// API keys.
//
// A key is "tvk_" followed by 32 random bytes in base64url: 256 bits, so a
// plain SHA-256 is a sound way to store it (no password hashing needed:
// there is nothing to brute-force) and the configuration holds only
// "sha256:<hex>". Lookups hash the presented key once and compare it
// with every configured hash in constant time, so neither timing nor an
// early exit tells which (if any) hash matched a prefix.

// APIKeyPrefix starts every key, so that leaked keys are easy to grep for
// (secret scanners) and a key is never confused with a token.
const APIKeyPrefix = "tvk_"

const apiKeyBytes = 32

// NewAPIKey returns a new random key and its hash for the configuration.
func NewAPIKey() (key, hash string, err error) {
	b := make([]byte, apiKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, HashAPIKey(key), nil
}

// HashAPIKey returns "sha256:<hex>" of key.
func HashAPIKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(s[:])
}

// ParseAPIKeyHash checks the "sha256:<64 hex digits>" form.
func ParseAPIKeyHash(h string) ([]byte, error) {
	rest, ok := strings.CutPrefix(h, "sha256:")
	if !ok {
		return nil, errors.New(`must start with "sha256:" (make one with "tokenvault apikey new")`)
	}
	b, err := hex.DecodeString(rest)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("must be sha256: followed by 64 hex digits")
	}
	return b, nil
}

// APIKey is one configured key: a name (used in the policy and the audit
// log) and the hash of the secret.
type APIKey struct {
	Name string `yaml:"name"`
	Hash string `yaml:"hash"`
}

// APIKeys checks presented keys against configured hashes.
type APIKeys struct {
	names  []string
	hashes [][]byte
}

// NewAPIKeys validates keys; errors name the entry ("[2].hash: ...") so
// the caller can prefix its config key.
func NewAPIKeys(keys []APIKey) (*APIKeys, error) {
	a := &APIKeys{}
	seen := map[string]int{}
	for i, k := range keys {
		if err := checkName(k.Name); err != nil {
			return nil, fmt.Errorf("[%d].name: %w", i, err)
		}
		if j, dup := seen[k.Name]; dup {
			return nil, fmt.Errorf("[%d].name: %q is already used by [%d]", i, k.Name, j)
		}
		seen[k.Name] = i
		h, err := ParseAPIKeyHash(k.Hash)
		if err != nil {
			return nil, fmt.Errorf("[%d].hash: %w", i, err)
		}
		a.names, a.hashes = append(a.names, k.Name), append(a.hashes, h)
	}
	return a, nil
}

// Len is the number of configured keys.
func (a *APIKeys) Len() int { return len(a.names) }

// Identify returns the identity of the key's owner, or an error wrapping
// ErrUnauthenticated that does not contain the key.
func (a *APIKeys) Identify(key string) (Identity, error) {
	sum := sha256.Sum256([]byte(key))
	match := -1
	for i, h := range a.hashes {
		// Constant time, and no early exit.
		if subtle.ConstantTimeCompare(sum[:], h) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Identity{}, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
	}
	return Identity{Name: a.names[match], Method: MethodAPIKey}, nil
}
