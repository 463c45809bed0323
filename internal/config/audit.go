package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuditRotateConfig rotates the audit log online (key
// auth.audit.rotate; zero values: never by size or age). SIGHUP and the
// RotateAuditLog admin call rotate on demand. See README "The audit log".
type AuditRotateConfig struct {
	// MaxSize: rotate once the current file holds this many bytes.
	MaxSize int64 `yaml:"max_size"`
	// MaxAge: rotate once the current file's first entry is this old.
	MaxAge time.Duration `yaml:"max_age"`
	// Compress gzips rotated files.
	Compress bool `yaml:"compress"`
}

// AuditRetentionConfig deletes the oldest rotated files (key
// auth.audit.retention; zero values: keep all). The current file and
// files not yet shipped are never deleted; each deletion is audited.
type AuditRetentionConfig struct {
	MaxFiles int           `yaml:"max_files"`
	MaxAge   time.Duration `yaml:"max_age"`
}

// Where the audit log's lines are shipped (auth.audit.ship), besides the
// file: every line byte for byte, so the copy verifies off-host with the
// public key.
const (
	AuditShipNone   = "none" // default
	AuditShipStdout = "stdout"
	AuditShipSyslog = "syslog"
)

// AuditSyslogConfig says where ship: syslog sends (key auth.audit.syslog).
type AuditSyslogConfig struct {
	// Network and Address as in log/syslog: "" and "" (default) is the
	// local syslog socket (/dev/log, which journald serves); else
	// unixgram, unix, udp or tcp and a path or host:port.
	Network string `yaml:"network"`
	Address string `yaml:"address"`
	// Tag names the messages (default tokenvault-audit).
	Tag string `yaml:"tag"`
}

// validateRotation checks rotation, retention and shipping, naming the
// offending key.
func (c *AuditConfig) validateRotation() error {
	var errs []error
	switch c.Ship {
	case "", AuditShipNone, AuditShipStdout, AuditShipSyslog:
	default:
		errs = append(errs, fmt.Errorf("auth.audit.ship: %q is not none, stdout or syslog", c.Ship))
	}
	switch c.Syslog.Network {
	case "", "unixgram", "unix", "udp", "tcp":
	default:
		errs = append(errs, fmt.Errorf("auth.audit.syslog.network: %q is not unixgram, unix, udp or tcp", c.Syslog.Network))
	}
	if c.Syslog.Network != "" && c.Syslog.Address == "" {
		errs = append(errs, errors.New("auth.audit.syslog.address: required with auth.audit.syslog.network"))
	}
	bad := func(key string) { errs = append(errs, fmt.Errorf("auth.audit.%s: must not be negative", key)) }
	if c.Rotate.MaxSize < 0 {
		bad("rotate.max_size")
	} else if c.Rotate.MaxSize > 0 && c.Rotate.MaxSize < minRotateSize {
		errs = append(errs, fmt.Errorf("auth.audit.rotate.max_size: %d bytes is below the minimum of %d (a file per few entries)", c.Rotate.MaxSize, minRotateSize))
	}
	if c.Rotate.MaxAge < 0 {
		bad("rotate.max_age")
	}
	if c.Retention.MaxFiles < 0 {
		bad("retention.max_files")
	}
	if c.Retention.MaxAge < 0 {
		bad("retention.max_age")
	}
	return errors.Join(errs...)
}

// minRotateSize bounds how small a rotated file can be configured.
const minRotateSize = 64 << 10

// Where audit entries are durable (auth.audit.sink).
const (
	// AuditSinkFile: the log file alone (default).
	AuditSinkFile = "file"
	// AuditSinkPostgres: a table in PostgreSQL first (one trail across
	// replicas, each replica's chain apart), then the same lines in the
	// file, which stays the local copy.
	AuditSinkPostgres = "postgres"
)

// AuditPostgresConfig configures the database sink (auth.audit.postgres).
type AuditPostgresConfig struct {
	// DSN of the database (default: store.postgres.dsn). It may hold a
	// password: best given as TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN; never
	// logged.
	DSN string `yaml:"dsn"`
}

// DBSink reports whether entries go to the database.
func (c *AuditConfig) DBSink() bool { return c.Sink == AuditSinkPostgres }

// PostgresDSN is the database sink's DSN: its own, else the store's.
func (c *AuditConfig) PostgresDSN(store StoreConfig) string {
	if dsn := strings.TrimSpace(c.Postgres.DSN); dsn != "" {
		return dsn
	}
	return strings.TrimSpace(store.Postgres.DSN)
}

// validateSink checks auth.audit.sink and the DSN it needs, naming the
// key and never quoting the DSN (a secret).
func (c *AuditConfig) validateSink(store StoreConfig) error {
	switch c.Sink {
	case "", AuditSinkFile:
		return nil
	case AuditSinkPostgres:
	default:
		return fmt.Errorf("auth.audit.sink: %q is not %q or %q", clipValue(c.Sink), AuditSinkFile, AuditSinkPostgres)
	}
	dsn := c.PostgresDSN(store)
	key := "auth.audit.postgres.dsn"
	if strings.TrimSpace(c.Postgres.DSN) == "" {
		key = "store.postgres.dsn"
	}
	switch {
	case dsn == "":
		return errors.New("auth.audit.postgres.dsn: must be set with auth.audit.sink postgres (or store.postgres.dsn, or TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN)")
	case !strings.Contains(dsn, "=") && !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://"):
		return fmt.Errorf("%s: not a key=value connection string or postgres:// URL", key)
	}
	return nil
}
