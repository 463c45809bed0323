package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/internal/auth"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "TOKENVAULT_"

// APIKeysEnv holds API keys (NAME=sha256:HEX, comma-separated) that add to
// auth.api_keys; lists have no derived variable of their own.
const APIKeysEnv = "TOKENVAULT_API_KEYS"

// ErrUnknownKey: Set was given a key the configuration does not have.
var ErrUnknownKey = errors.New("not a settable configuration key")

// Load reads the YAML file at path (none if path is ""), applies
// environment overrides from lookupEnv (os.LookupEnv in production), and
// returns the configuration. It neither sets defaults nor validates: call
// Validate after applying flags (Set).
//
// Every problem with the file's keys and values and with the environment
// is reported at once, each naming its key path (and line): the error
// then matches [ErrInvalid] and cfg holds everything else, so that
// Validate's findings can be reported with them. Other errors (the file
// cannot be read, is not YAML) come alone.
func Load(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	var cfg Config
	var probs problems
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		err = decode(b, &cfg)
		var p problems
		if errors.As(err, &p) {
			for _, e := range p {
				probs = append(probs, fmt.Errorf("%s: %w", path, e))
			}
		} else if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	probs = append(probs, applyEnv(reflect.ValueOf(&cfg).Elem(), EnvPrefix, "", lookupEnv)...)
	if v, _ := lookupEnv(APIKeysEnv); v != "" {
		if err := addAPIKeys(&cfg.Auth.APIKeys, v); err != nil {
			probs = append(probs, fmt.Errorf("%s: %w", APIKeysEnv, err))
		}
	}
	if cfg.KEK.Vault.Address == "" {
		cfg.KEK.Vault.Address, _ = lookupEnv("VAULT_ADDR")
	}
	if cfg.KEK.Vault.Token == "" {
		cfg.KEK.Vault.Token, _ = lookupEnv("VAULT_TOKEN")
	}
	if len(probs) > 0 {
		return cfg, probs
	}
	return cfg, nil
}

// Validate sets defaults and validates.
func Validate(cfg *Config) error {
	cfg.SetDefaults()
	return cfg.Validate()
}

// apiKeysKey is the one list that can be set from text (Set, APIKeysEnv).
const apiKeysKey = "auth.api_keys"

// Set sets the setting at key, a YAML key path such as "kek.keyring.path",
// from its text form as an environment variable gives it: durations such as
// 30s, true or false, KIND=DURATION pairs (comma-separated) for
// rights.retention. auth.api_keys takes NAME=sha256:HEX pairs,
// comma-separated, and adds them to the keys already configured. The error
// names the key but not the value, which may be a secret.
// cmd/tokenvault applies its flags through Set.
func (c *Config) Set(key, value string) error {
	if key == apiKeysKey {
		if err := addAPIKeys(&c.Auth.APIKeys, value); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	found := false
	err := eachLeaf(reflect.ValueOf(c).Elem(), EnvPrefix, "", func(fv reflect.Value, _, k string) error {
		if k != key {
			return nil
		}
		found = true
		if err := setField(fv, value); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%s: %w", key, ErrUnknownKey)
	}
	return err
}

// addAPIKeys appends NAME=sha256:HEX pairs (comma-separated) to keys. The
// pairs are only split here; Validate checks names and hashes.
func addAPIKeys(keys *[]auth.APIKey, v string) error {
	for _, one := range strings.Split(v, ",") {
		name, hash, ok := strings.Cut(strings.TrimSpace(one), "=")
		if !ok {
			return errors.New(`want NAME=sha256:HEX (from "tokenvault apikey new")`)
		}
		*keys = append(*keys, auth.APIKey{Name: name, Hash: hash})
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

// applyEnv sets every field whose environment variable is present and
// returns a problem for each one that does not parse.
func applyEnv(v reflect.Value, prefix, keyPrefix string, lookupEnv func(string) (string, bool)) problems {
	var probs problems
	eachLeaf(v, prefix, keyPrefix, func(fv reflect.Value, name, key string) error {
		s, ok := lookupEnv(name)
		if !ok {
			return nil
		}
		if err := setField(fv, s); err != nil {
			// The value is not echoed: it may be a secret.
			probs = append(probs, fmt.Errorf("%s (%s): %w", name, key, err))
		}
		return nil
	})
	return probs
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
	case fv.Type() == reflect.TypeFor[*bool]():
		// A bool whose default is true (log.access): nil is "not set".
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not true or false")
		}
		fv.Set(reflect.ValueOf(&b))
	case fv.Type() == reflect.TypeFor[*int]():
		// An int whose default is not 0 (store.badger.mapped_limit_mib,
		// where 0 means off): nil is "not set".
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not an integer")
		}
		fv.Set(reflect.ValueOf(&n))
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
	eachLeaf(reflect.ValueOf(Config{}), EnvPrefix, "", func(_ reflect.Value, name, _ string) error {
		names = append(names, name)
		return nil
	})
	return names
}
