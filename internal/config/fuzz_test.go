package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzDecode: the strict config decoder never panics; what it accepts
// re-marshals to YAML that decodes again and re-marshals to the same
// bytes (no setting is lost or changed on the way); defaults and
// validation never panic on it.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{"tokenvault.example.yaml", filepath.Join("docker", "tokenvault.yaml")} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
		"kek:\n  backup_retention: 5\n  vault:\n    timeout: 1m\n",
		"rights:\n  retention:\n    pan: 2160h\n    \"\": -1s\n",
		"auth:\n  api_keys:\n    - name: a\n      hash: sha256:00\n",
		"limits:\n  tokenize:\n    fields_per_second: .nan\n    burst: -3\n",
		"maintenance:\n  gc_discard_ratio: .inf\n",
		"cache: {size: 0x10, ttl: 1h1m1s}\n",
		"listen: &a x\ndata_dir: *a\n",
		"lisen: typo\n",
		"holds:\n  tax: {keep: 7y, purposes: [legal, tax-audit]}\n  short: {keep: 1y30d, purposes: [x]}\n",
		"holds:\n  bad: {keep: 7x}\n  Tax: {purposes: [\" a\"]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var cfg Config
		if decode(b, &cfg) != nil {
			return
		}
		out, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		var cfg2 Config
		if err := decode(out, &cfg2); err != nil {
			t.Fatalf("re-marshalled config does not decode: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(&cfg2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
		}
		cfg.SetDefaults()
		_ = cfg.Validate()
	})
}
