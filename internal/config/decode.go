package config

// Strict YAML decoding that reports every problem of a file at once, each
// by its key path and line ("kek.provder: unknown key (line 3; did you
// mean kek.provider?)"), rather than yaml.v3's Go-typed messages ("field
// provder not found in type config.KEKConfig").

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid marks an error that lists problems with what a file or the
// environment says (unknown keys, values of the wrong type): Load still
// returns the rest of the configuration, so a caller can add Validate's
// findings and report everything at once. Errors without it (an
// unreadable file, YAML that does not parse) leave nothing to validate.
var ErrInvalid = errors.New("invalid configuration")

// problems is the error Load returns for ErrInvalid: one line per
// problem.
type problems []error

func (p problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (p problems) Unwrap() []error { return p }

func (p problems) Is(target error) bool { return target == ErrInvalid }

// decode parses strictly: unknown keys are errors (a misspelt key would
// otherwise silently leave a security setting at its default). Problems
// with keys and values are collected (a problems error, leaving the
// rest of cfg decoded); a YAML syntax error or a second document is
// returned alone.
func decode(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil // an empty file
	} else if err != nil {
		return err
	}
	var extra yaml.Node
	if dec.Decode(&extra) != io.EOF {
		return errors.New("more than one YAML document")
	}
	w := walker{seen: map[*yaml.Node]bool{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w.check(root, reflect.TypeFor[Config](), "")
	err := doc.Decode(cfg)
	if len(w.problems) == 0 && err != nil {
		// Something the walk does not model: yaml's own words, without values.
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				w.problems = append(w.problems, errors.New(withoutValues(m)))
			}
		} else {
			return err
		}
	}
	if len(w.problems) > 0 {
		return w.problems
	}
	return nil
}

// walker checks a YAML node tree against the Config struct's shape.
type walker struct {
	problems problems
	seen     map[*yaml.Node]bool // each node once: aliases cannot multiply the work
}

func (w *walker) add(path string, n *yaml.Node, format string, args ...any) {
	w.problems = append(w.problems, fmt.Errorf("%s: %s (line %d)", displayPath(path), fmt.Sprintf(format, args...), n.Line))
}

func displayPath(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

func (w *walker) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if w.seen[n] || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return
	}
	w.seen[n] = true
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		if n.Kind != yaml.MappingNode {
			w.add(path, n, "want a mapping of keys, not %s", nodeKind(n))
			return
		}
		w.checkMapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(path, n, "want a list, not %s", nodeKind(n))
			return
		}
		for i, item := range n.Content {
			w.check(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	default:
		// A leaf (or the retention map): decode it alone to find out
		// whether it fits, so the error names this key.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(path, n, "%s", leafError(t, err))
		}
	}
}

func (w *walker) checkMapping(n *yaml.Node, t reflect.Type, path string) {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" && f.IsExported() {
			fields[tag] = f.Type
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" { // "<<: *defaults" merges another mapping here
			w.checkMerge(v, t, path)
			continue
		}
		key := path + k.Value
		if path != "" {
			key = path + "." + k.Value
		}
		ft, ok := fields[k.Value]
		if !ok {
			hint := ""
			if near := nearest(k.Value, fields); near != "" {
				hint = "; did you mean " + strings.TrimPrefix(path+"."+near, ".") + "?"
			}
			w.problems = append(w.problems, fmt.Errorf("%s: unknown key (line %d%s)", key, k.Line, hint))
			continue
		}
		w.check(v, ft, key)
	}
}

func (w *walker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			w.checkMerge(m, t, path)
		}
		return
	}
	w.check(v, t, path)
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return "a single value"
	}
}

// leafError says what a key's value should have been. The value itself
// is left out: it may be a secret put under the wrong key.
func leafError(t reflect.Type, err error) string {
	switch {
	case t == durationType:
		return "not a duration such as 30s, 10m or 720h"
	case t == reflect.TypeFor[map[string]time.Duration]():
		return "not a mapping of KIND: DURATION"
	case t.Kind() == reflect.Bool:
		return "not true or false"
	case t.Kind() == reflect.Int:
		return "not an integer"
	case t.Kind() == reflect.Float64:
		return "not a number"
	case t.Kind() == reflect.String:
		return "not a single value"
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return withoutValues(te.Errors[0])
	}
	return withoutValues(err.Error())
}

var quoted = regexp.MustCompile("`[^`]*`\\s*")

// withoutValues drops the `value` yaml.v3 quotes in its messages.
func withoutValues(m string) string { return quoted.ReplaceAllString(m, "") }

// nearest is the known key within two edits of k, if exactly one is: a
// likely misspelling.
func nearest(k string, fields map[string]reflect.Type) string {
	best, n := "", 0
	for f := range fields {
		if d := editDistance(k, f); d <= 2 {
			best, n = f, n+1
		}
	}
	if n != 1 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
