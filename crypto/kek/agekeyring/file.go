package agekeyring

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// The keyring file is age-encrypted (see [Open]); inside is this JSON
// object (format version 1):
//
//	{"format": "tokenvault-keyring-v1", "current": N,
//	 "versions": [{"version": N, "key": base64 of 32 bytes, "created": RFC 3339}, …]}
//
// The file is read and written through crypto/keyfile like every secret
// file (mode 0600, refused when group or others may access it).

// maxPlaintext bounds the decrypted keyring: each version takes about 100
// bytes, so this is thousands of rotations.
const maxPlaintext = 1 << 20

// fileV1 is the plaintext inside the age file.
type fileV1 struct {
	Format   string          `json:"format"`
	Current  int             `json:"current"`
	Versions []fileVersionV1 `json:"versions"`
}

type fileVersionV1 struct {
	Version int       `json:"version"`
	Key     []byte    `json:"key"`
	Created time.Time `json:"created"`
}

// encodeFile renders the keyring's plaintext. The caller clears it.
func encodeFile(current int, versions map[int]*version) ([]byte, error) {
	fv := fileV1{Format: fileFormat, Current: current}
	for _, n := range slices.Sorted(maps.Keys(versions)) {
		v := versions[n]
		fv.Versions = append(fv.Versions, fileVersionV1{Version: n, Key: v.key.Bytes(), Created: v.created})
	}
	return json.Marshal(fv)
}

// decodeFile parses the keyring's plaintext strictly: unknown members,
// trailing data, a bad or duplicate version, a key of the wrong size or a
// missing current version are errors (texts start with a verb, for "keyring
// PATH is corrupt: …", and never hold key bytes). On error every key
// already made is zeroed.
func decodeFile(plain []byte) (current int, versions map[int]*version, err error) {
	if len(plain) > maxPlaintext {
		return 0, nil, fmt.Errorf("is corrupt: larger than %d bytes", maxPlaintext)
	}
	var fv fileV1
	defer func() {
		for _, v := range fv.Versions {
			clear(v.Key)
		}
	}()
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fv); err != nil {
		// json's messages quote offsets and member names, not values.
		return 0, nil, fmt.Errorf("is corrupt: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, nil, errors.New("is corrupt: data after the keyring")
	}
	if fv.Format != fileFormat {
		return 0, nil, fmt.Errorf("has an unknown format (not %s)", fileFormat)
	}
	versions = map[int]*version{}
	fail := func(format string, args ...any) (int, map[int]*version, error) {
		for _, v := range versions {
			v.key.Zero()
		}
		return 0, nil, fmt.Errorf("is corrupt: "+format, args...)
	}
	for _, v := range fv.Versions {
		if v.Version <= 0 || v.Version > 1<<30 || versions[v.Version] != nil {
			return fail("bad version %d", v.Version)
		}
		k, err := aead.KeyFromBytes(v.Key)
		if err != nil {
			return fail("bad key in version %d", v.Version)
		}
		versions[v.Version] = &version{key: k, created: v.Created}
	}
	if versions[fv.Current] == nil {
		return fail("current version %d missing", fv.Current)
	}
	return fv.Current, versions, nil
}
