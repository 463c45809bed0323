package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleDocumentsEveryKey: README promises that
// deploy/tokenvault.example.yaml documents every key, so a key added to
// Config without a line there fails here. A key counts as documented when
// the example has it at its path, set or commented out ("# key: value"
// blocks are read as if uncommented), or names its environment variable
// (secrets such as kek.keyring.passphrase belong in the environment).
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "tokenvault.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	documented := exampleKeyPaths(string(b))
	// The variable of each key as Load reads it (eachLeaf), so that only a
	// variable that exists can stand for a key; lists have none.
	envOf := map[string]string{}
	eachLeaf(reflect.ValueOf(&Config{}).Elem(), EnvPrefix, "", func(_ reflect.Value, name, key string) error {
		envOf[key] = name
		return nil
	})
	keys := configKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 90 {
		t.Fatalf("found only %d config keys: the walk is broken", len(keys))
	}
	for _, k := range keys {
		env, hasEnv := envOf[k]
		if documented[k] || hasEnv && strings.Contains(string(b), env) {
			continue
		}
		if !hasEnv {
			env = "no variable"
		}
		t.Errorf("%s: not in deploy/tokenvault.example.yaml (neither the key, set or commented out, nor its environment variable: %s)", k, env)
	}
}

// configKeys lists the YAML key path of every field of t: sections are
// walked into, and so are the elements of lists of structs
// (auth.api_keys.name), which eachLeaf skips; a map is one key (its keys
// are the user's).
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := prefix + tag
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			keys = append(keys, configKeys(ft, key+".")...)
		}
	}
	return keys
}

// exampleKey matches a mapping key at the start of a line, after
// indentation, an optional "# " (commented out) and an optional "- " (a
// list item).
var exampleKey = regexp.MustCompile(`^( *)(# ?)?( *)(- )?([a-z][a-z0-9_]*):(\s|$)`)

// exampleKeyPaths returns the key paths of the example, reading
// commented-out lines as set ones. A commented key's column is taken 2
// to the left ("# " stands where its indentation was), which fits both
// styles the file uses: "# store:\n#   badger:" at the margin and
// "    # namespace: team-a" among set keys.
func exampleKeyPaths(doc string) map[string]bool {
	paths := map[string]bool{}
	type level struct {
		col  int
		path string
	}
	var stack []level
	for _, line := range strings.Split(doc, "\n") {
		m := exampleKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		col := len(m[1]) + len(m[3])
		if m[2] != "" {
			col += len(m[2]) - 2
		}
		if m[4] != "" {
			col += 2 // a list item's keys sit after "- "
		}
		for len(stack) > 0 && stack[len(stack)-1].col >= col {
			stack = stack[:len(stack)-1]
		}
		path := m[5]
		if len(stack) > 0 {
			path = stack[len(stack)-1].path + "." + path
		}
		paths[path] = true
		stack = append(stack, level{col, path})
	}
	return paths
}

// TestExampleKeyPaths pins the reader of commented-out blocks on the
// shapes the example uses.
func TestExampleKeyPaths(t *testing.T) {
	doc := `listen: x
# store:
#   badger:
#     mapped_limit_mib: 256
kek:
  vault:
    mount: transit
    # namespace: team-a   # Vault Enterprise
    auth:
      method: token
  backup_retention: 720h
auth:
  # api_keys:
  #   - name: a
  #     hash: b
volatile:
  # peers:
  #   - replica_id: a
  #     address: b:1
  forward:
    timeout: 5s
# Prose: not a key.
`
	got := exampleKeyPaths(doc)
	for _, want := range []string{"listen", "store.badger.mapped_limit_mib", "kek.vault.namespace",
		"kek.vault.auth.method", "kek.backup_retention", "auth.api_keys.name", "auth.api_keys.hash",
		"volatile.peers.replica_id", "volatile.peers.address", "volatile.forward.timeout"} {
		if !got[want] {
			t.Errorf("%s: not read; got %v", want, got)
		}
	}
	for _, not := range []string{"kek.vault.namespace.auth", "kek.vault.auth.method.backup_retention", "Prose"} {
		if got[not] {
			t.Errorf("%s: read, but is not a key path of the document", not)
		}
	}
}
