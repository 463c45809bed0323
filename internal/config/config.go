// Package config loads tokenvault's server configuration: a YAML file,
// then environment overrides, then defaults and validation. Every error
// names the key (or environment variable) at fault.
//
// Environment variables are derived from the YAML keys: TOKENVAULT_ plus
// the key path upper-cased and joined with "_", e.g. kek.vault.address is
// TOKENVAULT_KEK_VAULT_ADDRESS and log.level is TOKENVAULT_LOG_LEVEL.
// Secrets (kek.keyring.passphrase, kek.vault.token,
// kek.vault.auth.secret_id) are best given this way rather than in the
// file. The conventional VAULT_ADDR and VAULT_TOKEN are honoured when the
// corresponding keys are unset.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenvault/tokenvault/internal/app"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "TOKENVAULT_"

// Load reads the YAML file at path (none if path is ""), applies
// environment overrides from lookupEnv (os.LookupEnv in production), and
// returns the configuration with defaults set. It does not validate: call
// Validate after applying flags.
func Load(path string, lookupEnv func(string) (string, bool)) (app.Config, error) {
	var cfg app.Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := decode(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), EnvPrefix, "", lookupEnv); err != nil {
		return cfg, err
	}
	if cfg.KEK.Vault.Address == "" {
		cfg.KEK.Vault.Address, _ = lookupEnv("VAULT_ADDR")
	}
	if cfg.KEK.Vault.Token == "" {
		cfg.KEK.Vault.Token, _ = lookupEnv("VAULT_TOKEN")
	}
	return cfg, nil
}

// Validate sets defaults and validates.
func Validate(cfg *app.Config) error {
	cfg.SetDefaults()
	return cfg.Validate()
}

// decode parses strictly: unknown keys are errors (a misspelt key would
// otherwise silently leave a security setting at its default).
func decode(b []byte, cfg *app.Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if errors.Is(err, io.EOF) {
		return nil // an empty file
	}
	if err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return errors.New(strings.Join(te.Errors, "; "))
		}
		return err
	}
	var extra any
	if dec.Decode(&extra) != io.EOF {
		return errors.New("more than one YAML document")
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// eachLeaf calls fn for every settable leaf of the config struct v, with
// its environment variable name and its YAML key path. Nested structs
// (other than durations) are sections and are walked into.
func eachLeaf(v reflect.Value, prefix, keyPrefix string, fn func(fv reflect.Value, name, key string) error) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		name, key := prefix+strings.ToUpper(tag), keyPrefix+tag
		if f.Type.Kind() == reflect.Slice {
			continue // lists (auth.api_keys) come from the file, or a dedicated variable
		}
		var err error
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			err = eachLeaf(v.Field(i), name+"_", key+".", fn)
		} else {
			err = fn(v.Field(i), name, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyEnv sets every field whose environment variable is present.
func applyEnv(v reflect.Value, prefix, keyPrefix string, lookupEnv func(string) (string, bool)) error {
	return eachLeaf(v, prefix, keyPrefix, func(fv reflect.Value, name, key string) error {
		s, ok := lookupEnv(name)
		if !ok {
			return nil
		}
		if err := setField(fv, s); err != nil {
			// The value is not echoed: it may be a secret.
			return fmt.Errorf("%s (%s): %w", name, key, err)
		}
		return nil
	})
}

func setField(fv reflect.Value, s string) error {
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration such as 30s, 10m or 720h")
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(s)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not true or false")
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not an integer")
		}
		fv.SetInt(int64(n))
	case fv.Type() == reflect.TypeFor[map[string]time.Duration]():
		// KEY=DURATION pairs, comma-separated: "pan=2160h,email=720h".
		m := map[string]time.Duration{}
		for _, pair := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			d, err := time.ParseDuration(v)
			if !ok || k == "" || err != nil {
				return errors.New("not a comma-separated list of KEY=DURATION")
			}
			m[k] = d
		}
		fv.Set(reflect.ValueOf(m))
	case fv.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("not a number")
		}
		fv.SetFloat(x)
	default:
		return fmt.Errorf("cannot be set from the environment (type %s)", fv.Type())
	}
	return nil
}

// EnvNames lists every environment variable the config honours, for docs
// and tests.
func EnvNames() []string {
	var names []string
	eachLeaf(reflect.ValueOf(app.Config{}), EnvPrefix, "", func(_ reflect.Value, name, _ string) error {
		names = append(names, name)
		return nil
	})
	return names
}
