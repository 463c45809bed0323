package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDeployFilesParse parses every YAML and JSON file under deploy/ (CI
// has no cluster or Docker engine; this catches broken manifests), and
// checks that Kubernetes documents name their apiVersion and kind.
func TestDeployFilesParse(t *testing.T) {
	root := filepath.Join("..", "..", "deploy")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".json":
			n++
			if !json.Valid(b) {
				t.Errorf("%s: invalid JSON", path)
			}
		case ".yaml", ".yml":
			n++
			dec := yaml.NewDecoder(bytes.NewReader(b))
			for i := 0; ; i++ {
				var doc map[string]any
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Errorf("%s: document %d: %v", path, i, err)
					break
				}
				if strings.Contains(filepath.ToSlash(path), "/k8s/") && (doc["apiVersion"] == nil || doc["kind"] == nil) {
					t.Errorf("%s: document %d has no apiVersion or kind", path, i)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Fatalf("only %d YAML/JSON files found under deploy/", n)
	}
}
