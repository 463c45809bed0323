package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenvault/tokenvault/internal/config"
)

// Values of each source, by flag kind: the file's, the environment's and
// the command line's differ, so the test sees which one won.
var sample = map[string]map[flagKind]string{
	"file": {stringFlag: "from-file", durationFlag: "5s", boolFlag: "true", listFlag: ""},
	"env":  {stringFlag: "from-env", durationFlag: "6s", boolFlag: "true", listFlag: ""},
	"flag": {stringFlag: "from-flag", durationFlag: "7s", boolFlag: "false", listFlag: ""},
}

// lists: the list flags' values per source (a retention map, API keys).
var lists = map[string]map[string]string{
	"file": {"rights.retention": "email=5s", "auth.api_keys": "file-key=sha256:aa"},
	"env":  {"rights.retention": "name=6s", "auth.api_keys": "env-key=sha256:bb"},
	"flag": {"rights.retention": "pan=7s", "auth.api_keys": "flag-key=sha256:cc"},
}

func sourceValue(src string, kind flagKind, key string) string {
	if kind == listFlag {
		return lists[src][key]
	}
	return sample[src][kind]
}

// yamlValue is v as the file would hold it.
func yamlValue(kind flagKind, key, v string) any {
	switch {
	case kind == boolFlag:
		return v == "true"
	case key == "rights.retention":
		k, d, _ := strings.Cut(v, "=")
		return map[string]string{k: d}
	case key == "auth.api_keys":
		var keys []map[string]string
		for _, one := range strings.Split(v, ",") {
			name, hash, _ := strings.Cut(one, "=")
			keys = append(keys, map[string]string{"name": name, "hash": hash})
		}
		return keys
	}
	return v
}

// writeConfig writes a config file with value(key) for every flag's key.
func writeConfig(t *testing.T, value func(kind flagKind, key string) string) string {
	t.Helper()
	doc := map[string]any{}
	for _, f := range serveFlags {
		m, path := doc, strings.Split(f.key, ".")
		for _, p := range path[:len(path)-1] {
			if m[p] == nil {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[path[len(path)-1]] = yamlValue(f.kind, f.key, value(f.kind, f.key))
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokenvault.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envName(key string) string {
	if key == "auth.api_keys" {
		return config.APIKeysEnv
	}
	return config.EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func noEnv(string) (string, bool) { return "", false }

func load(t *testing.T, path string) config.Config {
	t.Helper()
	cfg, err := config.Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServeFlagsOverride: a flag given on the command line wins over the
// file and the environment, for every flag of the table; a flag not given
// leaves the configured value. API keys add up: file, environment, flags.
func TestServeFlagsOverride(t *testing.T) {
	file := writeConfig(t, func(k flagKind, key string) string { return sourceValue("file", k, key) })
	env := map[string]string{}
	var args []string
	for _, f := range serveFlags {
		env[envName(f.key)] = sourceValue("env", f.kind, f.key)
		args = append(args, "--"+f.name+"="+sourceValue("flag", f.kind, f.key))
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	t.Run("every flag given", func(t *testing.T) {
		got, err := serveConfig(append([]string{"--config", file}, args...), lookup, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := load(t, writeConfig(t, func(k flagKind, key string) string {
			if key == "auth.api_keys" {
				return strings.Join([]string{lists["file"][key], lists["env"][key], lists["flag"][key]}, ",")
			}
			return sourceValue("flag", k, key)
		}))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("no flag given", func(t *testing.T) {
		got, err := serveConfig([]string{"--config", file}, noEnv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if want := load(t, file); !reflect.DeepEqual(got, want) {
			t.Fatalf("got  %+v\nwant %+v", got, want)
		}
	})
	for i, f := range serveFlags {
		t.Run("only --"+f.name, func(t *testing.T) {
			got, err := serveConfig([]string{"--config", file, args[i]}, noEnv, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := load(t, writeConfig(t, func(k flagKind, key string) string {
				switch {
				case key != f.key:
					return sourceValue("file", k, key)
				case key == "auth.api_keys":
					return lists["file"][key] + "," + lists["flag"][key]
				}
				return sourceValue("flag", k, key)
			}))
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestServeFlagErrors: a bad value names the flag and the key, not the
// value.
func TestServeFlagErrors(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--retention=pan", "--retention: rights.retention: not a comma-separated list of KEY=DURATION"},
		{"--api-key=s3cr3t-not-a-pair", `--api-key: auth.api_keys: want NAME=sha256:HEX`},
	} {
		_, err := serveConfig([]string{tc.arg}, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: %v, want %q", tc.arg, err, tc.want)
		}
	}
	if _, err := serveConfig([]string{"--backup-retention", "forever"}, noEnv, io.Discard); err == nil {
		t.Error("a bad duration was accepted")
	}
}

// TestNewLogger: log.format and log.level reach the handler, and its lines
// are slog's (internal/logline's fast path writes the same bytes).
func TestNewLogger(t *testing.T) {
	for _, c := range []struct {
		format, level string
		json          bool
		lvl           slog.Level
	}{{"text", "info", false, slog.LevelInfo}, {"json", "debug", true, slog.LevelDebug}, {"text", "warn", false, slog.LevelWarn}} {
		t.Run(c.format+"/"+c.level, func(t *testing.T) {
			var got, want bytes.Buffer
			lg := newLogger(config.LogConfig{Format: c.format, Level: c.level}, &got)
			opts := &slog.HandlerOptions{Level: c.lvl}
			ref := slog.New(slog.NewTextHandler(&want, opts))
			if c.json {
				ref = slog.New(slog.NewJSONHandler(&want, opts))
			}
			at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			for _, l := range []*slog.Logger{lg, ref} {
				for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
					if !l.Enabled(context.Background(), lv) {
						continue
					}
					r := slog.NewRecord(at, lv, "rpc", 0)
					r.AddAttrs(slog.String("method", "/tokenvault.v1.TokenVault/Tokenize"), slog.String("code", "OK"), slog.Duration("duration", time.Millisecond))
					l.Handler().Handle(context.Background(), r)
				}
			}
			if got.Len() == 0 || got.String() != want.String() {
				t.Fatalf("got %q\nwant %q", got.String(), want.String())
			}
		})
	}
}
