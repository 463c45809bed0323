package agekeyring

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

// Config says where the keyring is and what opens it.
type Config struct {
	// Path of the age-encrypted keyring file.
	Path string `yaml:"path"`
	// IdentityFile is an age X25519 identity file (as made by age-keygen).
	// Used unless Passphrase is set.
	IdentityFile string `yaml:"identity_file"`
	// Passphrase, if set, protects the keyring with age's scrypt
	// recipient instead of an identity file. Read it from the environment
	// or a secret store, never from a flag.
	Passphrase string `yaml:"passphrase"`
}

// String hides the passphrase, so that printing a Config is safe.
func (c Config) String() string {
	if c.Passphrase != "" {
		c.Passphrase = "REDACTED"
	}
	type plain Config // no String method: avoids recursion
	return fmt.Sprintf("%+v", plain(c))
}

// LogValue hides the passphrase when a Config is logged with slog.
func (c Config) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// Validate names the offending setting.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("kek.keyring.path: must not be empty")
	}
	if c.Passphrase == "" && c.IdentityFile == "" {
		return errors.New("kek.keyring.identity_file: must be set unless kek.keyring.passphrase (env TOKENVAULT_KEK_KEYRING_PASSPHRASE) is given")
	}
	return nil
}

// OpenOrCreate opens the keyring described by cfg. A missing keyring is
// created (together with a new identity file, if that is missing too) only
// when mayCreate is true: the caller passes false when the store already
// holds wrapped keys, so a lost keyring is reported instead of silently
// replaced by one that can open none of them. created reports whether a
// new keyring was made.
func OpenOrCreate(cfg Config, mayCreate bool) (p Provider, created bool, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, false, err
	}
	_, statErr := os.Stat(cfg.Path)
	exists := statErr == nil
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
		return nil, false, fmt.Errorf("agekeyring: %w", statErr)
	}
	if !exists && !mayCreate {
		return nil, false, fmt.Errorf("%w: %s (the data directory holds wrapped keys, so a new keyring would open none of them; restore the keyring file)", ErrNotExist, cfg.Path)
	}
	ids, recips, err := cfg.identities(!exists)
	if err != nil {
		return nil, false, err
	}
	if exists {
		p, err := Open(cfg.Path, ids, recips)
		return p, false, err
	}
	p, err = Create(cfg.Path, recips...)
	return p, err == nil, err
}

func (c Config) identities(mayGenerate bool) ([]age.Identity, []age.Recipient, error) {
	if c.Passphrase != "" {
		id, err := age.NewScryptIdentity(c.Passphrase)
		if err != nil {
			return nil, nil, fmt.Errorf("agekeyring: passphrase: %w", err)
		}
		r, err := age.NewScryptRecipient(c.Passphrase)
		if err != nil {
			return nil, nil, fmt.Errorf("agekeyring: passphrase: %w", err)
		}
		return []age.Identity{id}, []age.Recipient{r}, nil
	}
	b, err := keyfile.ReadSecret(c.IdentityFile)
	if errors.Is(err, fs.ErrNotExist) && mayGenerate {
		return generateIdentity(c.IdentityFile)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("agekeyring: identity file: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	clear(b)
	if err != nil {
		return nil, nil, fmt.Errorf("agekeyring: identity file %s: %w", c.IdentityFile, err)
	}
	var recips []age.Recipient
	for _, id := range ids {
		x, ok := id.(*age.X25519Identity)
		if !ok {
			return nil, nil, fmt.Errorf("agekeyring: identity file %s: only X25519 identities are supported", c.IdentityFile)
		}
		recips = append(recips, x.Recipient())
	}
	return ids, recips, nil
}

// generateIdentity writes a new X25519 identity file, mode 0600, refusing
// to overwrite an existing one.
func generateIdentity(path string) ([]age.Identity, []age.Recipient, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, nil, fmt.Errorf("agekeyring: %w", err)
	}
	content := strings.Join([]string{
		"# tokenvault keyring identity: opens the KEK keyring. Keep it secret,",
		"# keep it apart from the data directory, and back it up separately.",
		"# public key: " + id.Recipient().String(),
		id.String(), ""}, "\n")
	if err := keyfile.WriteExclusive(path, []byte(content)); err != nil {
		return nil, nil, fmt.Errorf("agekeyring: identity file: %w", err)
	}
	return []age.Identity{id}, []age.Recipient{id.Recipient()}, nil
}
