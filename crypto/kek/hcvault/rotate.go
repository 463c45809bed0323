package hcvault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// keyInfo is the part of transit's key read (GET <mount>/keys/<key>) we use.
type keyInfo struct {
	Type                 string `json:"type"`
	LatestVersion        int    `json:"latest_version"`
	MinAvailableVersion  int    `json:"min_available_version"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
	MinEncryptionVersion int    `json:"min_encryption_version"`
	SupportsEncryption   bool   `json:"supports_encryption"`
	SupportsDecryption   bool   `json:"supports_decryption"`
	Derived              bool   `json:"derived"`
	// Keys maps each version Vault still holds to its creation time (Unix
	// seconds) for symmetric keys. Versions below min_decryption_version are
	// moved out of this map by transit, so it lists what can still decrypt.
	// (Asymmetric keys have objects here instead: RawMessage lets the read
	// of such a key succeed, so that Healthy can say what is wrong with it.)
	Keys map[string]json.RawMessage `json:"keys"`
}

func (p *provider) readKey(ctx context.Context, o op) (*keyInfo, error) {
	var info keyInfo
	if err := p.do(ctx, o, http.MethodGet, p.keyPath, nil, &info); err != nil {
		return nil, err
	}
	if info.LatestVersion < 1 {
		return nil, fmt.Errorf("hcvault: %s: unexpected transit key description from Vault", o.name)
	}
	return &info, nil
}

// Rotate adds a key version with transit's rotate, then reads the key to
// learn its number. If two rotations race, the number may be the other's:
// either way it is the version new wraps now use.
func (p *provider) Rotate(ctx context.Context) (int, error) {
	if err := p.do(ctx, opRotate, http.MethodPut, p.keyPath+"/rotate", struct{}{}, nil); err != nil {
		return 0, err
	}
	info, err := p.readKey(ctx, opRotate)
	if err != nil {
		return 0, err
	}
	p.logger.Info("rotated transit key", "mount", p.cfg.Mount, "key", p.cfg.Key, "version", info.LatestVersion)
	return info.LatestVersion, nil
}

// Rewrap re-encrypts blobs under the newest version, bound to their items'
// associated data: a batch decrypt (with each bound blob's associated data,
// none for an unbound one), then a batch encrypt. Transit's own rewrap
// would keep the DEKs inside Vault, but it takes no associated_data, so it
// can neither open a bound blob nor bind an unbound one. The DEKs are
// zeroed before Rewrap returns.
func (p *provider) Rewrap(ctx context.Context, items []kek.RewrapItem) ([][]byte, error) {
	reqs := make([]decryptItem, len(items))
	for i, it := range items {
		err := kek.CheckAD(it.AD)
		if err == nil {
			reqs[i], err = decryptRequest(it.Wrapped, it.AD)
		}
		if err != nil {
			return nil, fmt.Errorf("hcvault: rewrap: item %d: %w", i, err)
		}
	}
	out := make([][]byte, 0, len(items))
	// One chunk at a time, so that at most maxBatch DEKs are in memory.
	for chunk := range slices.Chunk(reqs, maxBatch) {
		deks, err := batchPlaintexts(ctx, p, opRewrapDecrypt, p.decryptPath, chunk, len(out))
		if err != nil {
			return nil, err
		}
		enc := make([]encryptItem, len(deks))
		for i, dek := range deks {
			enc[i] = encryptItem{Plaintext: dek, AssociatedData: items[len(out)+i].AD}
		}
		wrapped, err := batchCiphertexts(ctx, p, opRewrapEncrypt, p.encryptPath, enc)
		for _, dek := range deks {
			clear(dek)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, wrapped...)
	}
	return out, nil
}

// Retire makes versions below minVersion permanently unusable: first
// min_decryption_version (Vault refuses to decrypt under them), then trim
// (Vault deletes them). Floors only ever go up, so a Retire with a lower
// minVersion than an earlier one changes nothing, and a Retire that failed
// halfway can simply be repeated.
func (p *provider) Retire(ctx context.Context, minVersion int) error {
	info, err := p.readKey(ctx, opRetire)
	if err != nil {
		return err
	}
	if minVersion < 1 || minVersion > info.LatestVersion {
		return fmt.Errorf("hcvault: retire: version %d out of range 1..%d", minVersion, info.LatestVersion)
	}
	dec := max(info.MinDecryptionVersion, minVersion)
	// Trim requires a non-zero min_encryption_version at or above the trim
	// point. Encryption still uses the latest version: this floor only stops
	// anyone from asking for an older one (rewrap's key_version, say).
	enc := max(info.MinEncryptionVersion, dec)
	if dec != info.MinDecryptionVersion || enc != info.MinEncryptionVersion {
		cfg := map[string]int{"min_decryption_version": dec, "min_encryption_version": enc}
		if err := p.do(ctx, opRetire, http.MethodPut, p.keyPath+"/config", cfg, nil); err != nil {
			return err
		}
	}
	if info.MinAvailableVersion < dec {
		trim := map[string]int{"min_available_version": dec}
		if err := p.do(ctx, opRetire, http.MethodPut, p.keyPath+"/trim", trim, nil); err != nil {
			return fmt.Errorf("%w (versions below %d no longer decrypt but are not deleted yet; retry Retire)", err, dec)
		}
	}
	p.logger.Info("retired transit key versions", "mount", p.cfg.Mount, "key", p.cfg.Key, "below", dec)
	return nil
}

// Versions lists the key versions Vault can still decrypt with, oldest first.
func (p *provider) Versions(ctx context.Context) ([]kek.Version, error) {
	info, err := p.readKey(ctx, opVersions)
	if err != nil {
		return nil, err
	}
	out := make([]kek.Version, 0, len(info.Keys))
	for k, created := range info.Keys {
		v, err := strconv.Atoi(k)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("hcvault: versions: unexpected key version %q from Vault", k)
		}
		if v < info.MinDecryptionVersion {
			continue
		}
		kv := kek.Version{Version: v}
		if secs, err := json.Number(created).Int64(); err == nil && secs > 0 {
			kv.Created = time.Unix(secs, 0).UTC()
		}
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b kek.Version) int { return a.Version - b.Version })
	return out, nil
}

// Describe parses "[ad1:]vault:v<N>:...".
func (p *provider) Describe(wrapped []byte) (kek.WrappedInfo, error) {
	info, _, err := parseWrapped(wrapped)
	if err != nil {
		return kek.WrappedInfo{}, fmt.Errorf("hcvault: %w", err)
	}
	return info, nil
}

// boundPrefix marks a blob wrapped with associated data; blobs without it
// were wrapped before tokenvault bound wrapped keys.
const boundPrefix = "ad1:"

func bound(ciphertext string) []byte {
	return append([]byte(boundPrefix), ciphertext...)
}

// parseWrapped checks a stored blob — an optional boundPrefix, then a
// transit ciphertext (see parseCiphertext), at most maxWrappedSize bytes in
// all — and returns what it says and the transit ciphertext.
func parseWrapped(b []byte) (kek.WrappedInfo, string, error) {
	if len(b) > maxWrappedSize {
		return kek.WrappedInfo{}, "", fmt.Errorf("%w: too long", kek.ErrInvalidWrapped)
	}
	ct, isBound := strings.CutPrefix(string(b), boundPrefix)
	v, err := parseCiphertext(ct)
	if err != nil {
		return kek.WrappedInfo{}, "", err
	}
	return kek.WrappedInfo{Version: v, Bound: isBound}, ct, nil
}

// decryptRequest is the decrypt batch item for a stored blob: its transit
// ciphertext, with ad if the blob is bound.
func decryptRequest(wrapped, ad []byte) (decryptItem, error) {
	info, ct, err := parseWrapped(wrapped)
	if err != nil {
		return decryptItem{}, err
	}
	req := decryptItem{Ciphertext: ct}
	if info.Bound {
		req.AssociatedData = ad
	}
	return req, nil
}

const wrappedPrefix = "vault:v"

// parseCiphertext checks a transit ciphertext's shape strictly —
// "vault:v<N>:<base64>" with N a positive decimal without leading zeros,
// standard base64 alphabet — and returns N. It rejects what Vault would,
// without the round trip, and keeps arbitrary bytes out of requests.
func parseCiphertext(s string) (int, error) {
	invalid := func(why string) (int, error) {
		return 0, fmt.Errorf("%w: %s", kek.ErrInvalidWrapped, why)
	}
	if len(s) == 0 {
		return invalid("empty")
	}
	if len(s) > maxWrappedSize {
		return invalid("too long")
	}
	rest, ok := strings.CutPrefix(s, wrappedPrefix)
	if !ok {
		return invalid("not a Vault transit ciphertext")
	}
	num, payload, ok := strings.Cut(rest, ":")
	if !ok || num == "" || len(num) > 9 || num[0] == '0' {
		return invalid("bad version")
	}
	v := 0
	for _, c := range num {
		if c < '0' || c > '9' {
			return invalid("bad version")
		}
		v = v*10 + int(c-'0')
	}
	if payload == "" || len(payload)%4 != 0 {
		return invalid("bad ciphertext encoding")
	}
	body := strings.TrimSuffix(strings.TrimSuffix(payload, "="), "=")
	for _, c := range body {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
		default:
			return invalid("bad ciphertext encoding")
		}
	}
	return v, nil
}
