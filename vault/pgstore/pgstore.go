// Package pgstore is the PostgreSQL [vault.Store], on [pgx] (pgxpool):
// the scale-out store that several tokenvault replicas share.
//
// The schema is versioned and embedded (schema/NNNN_*.sql, applied by
// [Migrate], recorded in tokenvault_schema_version); [Open] refuses a
// database whose schema is older or newer than this binary's. No table or
// index holds a subject id in the clear (see schema/0001_init.sql):
// subjects are addressed by [vault.StoreSubjectHash] and the id is kept
// sealed under [vault.StoreSealKey], as in the badger store's layout 2.
//
// Uniqueness of tokens (across every kind and subject) and of
// deterministic lookups is the database's: primary key and unique
// constraints: a clash is seen (never an overwrite), reported as a
// [vault.CollisionError] and the whole batch rolled back. Every write is
// one transaction committed with synchronous_commit as the server has it
// (on by default): what is acknowledged is durable. Concurrent writes run
// on separate pooled connections, so durability does not serialize them;
// a batch of records, with the check of its subject's key, is one
// statement, so one round trip (PutRecords).
//
// The store is shared: it does not implement [vault.ExclusiveStore], so
// the vault reads a subject's key from the database on every request and
// an erasure or restriction made through another replica holds at once,
// whatever this replica has cached. Background jobs that must run on one
// replica at a time take a lease ([Store.TryLease]).
//
// Statements stay within what PostgreSQL-compatible distributed engines
// (CockroachDB, YugabyteDB) also support: no advisory locks, no
// LISTEN/NOTIFY other than as an accelerator (notify.go), plain types.
//
// [pgx]: https://github.com/jackc/pgx
package pgstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

var (
	_ vault.Store        = (*Store)(nil)
	_ vault.RightsStore  = (*Store)(nil)
	_ vault.LedgerStore  = (*Store)(nil)
	_ vault.KeyScanStore = (*Store)(nil)
	_ vault.TokenCounter = (*Store)(nil)

	_ vault.RecordKeyStore    = (*Store)(nil)
	_ vault.RecordBatchStore  = (*Store)(nil)
	_ vault.LookupBatchStore  = (*Store)(nil)
	_ vault.SettledPurgeStore = (*Store)(nil)
)

const (
	ledgerHashSize = 32
	// maxWrapped bounds a stored wrapped key, as in the badger store.
	maxWrapped = 4096
	// purgeBatch bounds one purge or ledger transaction.
	purgeBatch = 1000
	// retries bounds re-running a transaction that lost a race the
	// database reports as an error (a serialization failure, or a unique
	// violation of a row committed after our check).
	retries = 16
	// defaultConnectTimeout bounds one connection attempt when the DSN
	// sets no connect_timeout.
	defaultConnectTimeout = 5 * time.Second
)

// Options tune the store.
type Options struct {
	// IDKey hashes and seals subject ids: the vault's ledger key (see
	// [vault.StoreSubjectHash]). The store keeps a copy. Nil stands for a
	// fixed, public key, for tests only. A database written with one key
	// refuses every other ([ErrWrongIDKey]).
	IDKey *aead.Key
	// LoadIDKey, if set, is asked for IDKey once the database is open,
	// with whether it already holds anything made with a key (the key
	// check or erasure-ledger entries): a missing key file must then not
	// be replaced by a new key. The store zeroes nothing it returns.
	LoadIDKey func(keyed bool) (*aead.Key, error)
	// MaxConns bounds the connection pool (0: pgxpool's default, the
	// larger of 4 and the number of CPUs).
	MaxConns int32
	Logger   *slog.Logger
	// tracer, if set, sees every statement of the pool (tests count the
	// round trips of an operation with it).
	tracer pgx.QueryTracer
}

// Store is the PostgreSQL store.
type Store struct {
	// pool classifies the errors of an unreachable database (errors.go).
	pool dbPool
	// q runs the read statements: the pool, or for a backup one
	// read-only transaction (backup.go).
	q   querier
	log *slog.Logger
	ids *vault.StoreIDs
	// notify: the database has LISTEN/NOTIFY (notify.go); lst is this
	// replica's listener.
	notify bool
	lst    *listener
}

// querier is what pgxpool.Pool and pgx.Tx share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ErrWrongIDKey: the database was written with another subject-id key
// (the vault's ledger key) than the one the store was opened with.
var ErrWrongIDKey = errors.New("pgstore: the database was written with another ledger key (subject ids are hashed with it): every replica must use the same ledger.key")

// Open connects to the database named by dsn and checks its schema
// version and subject-id key. The DSN is never logged or put into an
// error (it may hold a password).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	pool, err := openPool(ctx, dsn, opts.MaxConns, opts.tracer)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	k := opts.IDKey
	if opts.LoadIDKey != nil {
		has, err := keyed(ctx, pool)
		if err == nil {
			k, err = opts.LoadIDKey(has)
		}
		if err == nil && k == nil {
			err = errors.New("pgstore: no subject-id key")
		}
		if err != nil {
			pool.Close()
			return nil, err
		}
	}
	ids, err := newIDKeys(k)
	if err != nil {
		pool.Close()
		return nil, err
	}
	db := dbPool{pool}
	s := &Store{pool: db, q: db, lst: &listener{}, log: opts.Logger.With("component", "pgstore"), ids: ids}
	if err := s.checkIDKey(ctx); err != nil {
		s.Close()
		return nil, err
	}
	var restoring bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokenvault_meta WHERE name = $1)`, restoreMark).Scan(&restoring); err != nil {
		s.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if restoring {
		s.Close()
		return nil, ErrRestoring
	}
	if s.notify = probeNotify(ctx, db); !s.notify {
		s.log.Info("the database has no LISTEN/NOTIFY: caches drop the keys of subjects changed elsewhere at their TTL (correctness does not depend on it)")
	}
	return s, nil
}

// openPool parses dsn and connects. pgx handles TLS (sslmode,
// sslrootcert, ...) and multi-host DSNs (target_session_attrs).
func openPool(ctx context.Context, dsn string, maxConns int32, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the DSN (password masked, but not
		// every secret a DSN can hold is a password field): none of it.
		return nil, errors.New("pgstore: the DSN is not a valid PostgreSQL connection string (key=value or postgres:// URL)")
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A host that does not answer (a primary that vanished, a
		// partition) must not hold a connection attempt for the kernel's
		// TCP timeout: the attempt fails and a multi-host DSN tries the
		// next host. The DSN's connect_timeout overrides it.
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connecting to the database: %w", err)
	}
	return pool, nil
}

// Close closes the pool and zeroes the store's keys.
func (s *Store) Close() error {
	s.pool.Close()
	s.ids.Zero()
	return nil
}

// keyed reports whether the database holds anything made with a
// subject-id key.
func keyed(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var has bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokenvault_meta WHERE name = 'id_key_check') OR EXISTS (SELECT 1 FROM tokenvault_ledger)`).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("pgstore: %w", err)
	}
	return has, nil
}

func (s *Store) checkIDKey(ctx context.Context) error {
	check, err := s.ids.Check(idKeyCheckLen)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO tokenvault_meta (name, value) VALUES ('id_key_check', $1) ON CONFLICT (name) DO NOTHING`, check); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	var stored []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM tokenvault_meta WHERE name = 'id_key_check'`).Scan(&stored); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	if string(stored) != string(check) {
		return ErrWrongIDKey
	}
	return nil
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// tx runs fn in a transaction, again when the database reports a race
// it lost (see retries).
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.txWith(ctx, pgx.TxOptions{}, fn)
}

// txWith is tx with the transaction options opts.
func (s *Store) txWith(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	var err error
	for range retries {
		err = pgx.BeginTxFunc(ctx, s.pool, opts, fn)
		if !retryable(err) {
			return classify(err)
		}
	}
	return classify(err)
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "23505")
}

// hashOf is subject's hash, the key of its row.
func (s *Store) hashOf(subject string) ([]byte, error) { return s.ids.Hash(subject) }

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ErrNotFound
	}
	return err
}

func (s *Store) SubjectKey(ctx context.Context, subject string) (vault.SubjectKey, error) {
	h, err := s.hashOf(subject)
	if err != nil {
		return vault.SubjectKey{}, err
	}
	var sk vault.SubjectKey
	var id []byte
	var restricted *time.Time
	err = s.q.QueryRow(ctx, `SELECT key_id, wrapped, created, restricted FROM tokenvault_subject_keys WHERE subject_hash = $1`, h).
		Scan(&id, &sk.Wrapped, &sk.Created, &restricted)
	if err != nil {
		return sk, notFound(err)
	}
	return finishKey(sk, id, restricted)
}

func finishKey(sk vault.SubjectKey, id []byte, restricted *time.Time) (vault.SubjectKey, error) {
	if len(id) != len(sk.ID) {
		return sk, fmt.Errorf("%w: key id of %d bytes", vault.ErrCorrupt, len(id))
	}
	copy(sk.ID[:], id)
	sk.Created = sk.Created.UTC()
	if restricted != nil {
		sk.Restricted = restricted.UTC()
	}
	return sk, nil
}

func (s *Store) SubjectKeyByID(ctx context.Context, id vault.KeyID) (string, vault.SubjectKey, error) {
	var sk vault.SubjectKey
	var rid, sealed []byte
	var restricted *time.Time
	err := s.pool.QueryRow(ctx, `SELECT key_id, wrapped, created, restricted, sealed_subject FROM tokenvault_subject_keys WHERE key_id = $1`, id[:]).
		Scan(&rid, &sk.Wrapped, &sk.Created, &restricted, &sealed)
	if err != nil {
		return "", sk, notFound(err)
	}
	if sk, err = finishKey(sk, rid, restricted); err != nil {
		return "", sk, err
	}
	subject, err := s.ids.OpenSubject(id, sealed)
	return subject, sk, err
}

func (s *Store) CreateSubjectKey(ctx context.Context, subject string, sk vault.SubjectKey) (vault.SubjectKey, error) {
	if len(sk.Wrapped) == 0 || len(sk.Wrapped) > maxWrapped {
		return sk, fmt.Errorf("pgstore: wrapped key size %d out of range", len(sk.Wrapped))
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return sk, err
	}
	sealed, err := s.ids.SealSubject(sk.ID, subject)
	if err != nil {
		return sk, err
	}
	for range retries {
		tag, err := s.pool.Exec(ctx, `INSERT INTO tokenvault_subject_keys (subject_hash, key_id, wrapped, created, sealed_subject)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_hash) DO NOTHING`, h, sk.ID[:], sk.Wrapped, sk.Created, sealed)
		if err != nil {
			return sk, fmt.Errorf("pgstore: storing subject key: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return sk, nil
		}
		// A concurrent first use stored its key first: use that one
		// (unless it was erased meanwhile; then try again).
		existing, err := s.SubjectKey(ctx, subject)
		if !errors.Is(err, vault.ErrNotFound) {
			return existing, err
		}
	}
	return sk, errors.New("pgstore: storing subject key: lost too many races")
}

// liveKey locks the subject's key row for the transaction if its key is
// still id (FOR SHARE: concurrent writers of the subject do not wait for
// each other, a shred's DELETE waits for them), ErrErased otherwise.
func liveKey(ctx context.Context, tx pgx.Tx, h []byte, id vault.KeyID) error {
	var one int
	err := tx.QueryRow(ctx, liveKeySQL, h, id[:]).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ErrErased
	}
	return err
}

const liveKeySQL = `SELECT 1 FROM tokenvault_subject_keys WHERE subject_hash = $1 AND key_id = $2 FOR SHARE`

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func optBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return b
}

func checkRecord(r vault.Record, id vault.KeyID) error {
	switch {
	case r.KeyID != id:
		return errors.New("pgstore: record under another key")
	case r.AADVersion != vault.RecordAADv1 && r.AADVersion != vault.RecordAADv2:
		return fmt.Errorf("pgstore: record of unknown AAD version %d", r.AADVersion)
	case r.Lookup != nil && len(r.Lookup) != 32:
		return fmt.Errorf("pgstore: lookup key of %d bytes", len(r.Lookup))
	}
	return nil
}

// putRecordsSQL stores a whole batch in one statement, so in one round
// trip and, run outside a transaction, one implicit transaction that is
// committed (synchronous_commit as the server has it) before the answer
// comes back: what is acknowledged is durable, as with BEGIN … COMMIT.
//
// k checks and locks the subject's key row (FOR SHARE, as liveKey): the
// rows are inserted only if the key is still id, and a shred's DELETE
// waits for this statement. The inserts have no ON CONFLICT: a clash
// with a stored row, or between two rows of the batch, is a unique
// violation that fails the statement, so nothing of the batch is stored
// and nothing is overwritten; putRecords then finds which record clashed
// (collision). A concurrent insert of the same token is waited for.
const putRecordsSQL = `WITH k AS (
		SELECT 1 FROM tokenvault_subject_keys WHERE subject_hash = $1 AND key_id = $2 FOR SHARE),
	ins AS (
		INSERT INTO tokenvault_records (token_hash, token, key_id, kind, created, expires, lookup, sealed, aad_version)
		SELECT r.token_hash, r.token, $2, r.kind, r.created, r.expires, r.lookup, r.sealed, r.aad_version
		FROM unnest($3::bytea[], $4::bytea[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::bytea[], $9::bytea[], $10::bigint[])
			AS r (token_hash, token, kind, created, expires, lookup, sealed, aad_version)
		WHERE EXISTS (SELECT 1 FROM k)
		RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM k), (SELECT count(*) FROM ins)`

// putRecordSQL is putRecordsSQL for one record (the common Tokenize of
// one field): scalar parameters, where arrays of one cost more to encode
// here and to unnest there.
const putRecordSQL = `WITH k AS (
		SELECT 1 FROM tokenvault_subject_keys WHERE subject_hash = $1 AND key_id = $2 FOR SHARE),
	ins AS (
		INSERT INTO tokenvault_records (token_hash, token, key_id, kind, created, expires, lookup, sealed, aad_version)
		SELECT $3::bytea, $4::bytea, $2, $5::bigint, $6::timestamptz, $7::timestamptz, $8::bytea, $9::bytea, $10::bigint
		WHERE EXISTS (SELECT 1 FROM k)
		RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM k), (SELECT count(*) FROM ins)`

func (s *Store) PutRecords(ctx context.Context, subject string, id vault.KeyID, recs []vault.Record) error {
	for _, r := range recs {
		if err := checkRecord(r, id); err != nil {
			return err
		}
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return err
	}
	n := len(recs)
	sql, args := putRecordsSQL, []any(nil)
	hashes, tokens, kinds := make([][]byte, n), make([][]byte, n), make([]int64, n)
	created, expires := make([]time.Time, n), make([]*time.Time, n)
	lookups, sealed, aads := make([][]byte, n), make([][]byte, n), make([]int64, n)
	for i, r := range recs {
		hashes[i], tokens[i], kinds[i] = tokenHash(r.Token), []byte(r.Token), int64(r.Kind)
		created[i], expires[i] = r.Created, optTime(r.Expires)
		lookups[i], sealed[i], aads[i] = optBytes(r.Lookup), r.Sealed, int64(r.AADVersion)
	}
	if n == 1 {
		sql, args = putRecordSQL, []any{h, id[:], hashes[0], tokens[0], kinds[0], created[0], expires[0], lookups[0], sealed[0], aads[0]}
	} else {
		args = []any{h, id[:], hashes, tokens, kinds, created, expires, lookups, sealed, aads}
	}
	for range retries {
		var live bool
		var stored int64
		err = s.pool.QueryRow(ctx, sql, args...).Scan(&live, &stored)
		switch {
		case err == nil && !live:
			return vault.ErrErased
		case err == nil && stored != int64(n):
			return fmt.Errorf("pgstore: stored %d records of %d", stored, n)
		case err == nil:
			return nil
		case isUniqueViolation(err):
			ce, cerr := s.collision(ctx, id, recs, hashes)
			if cerr != nil {
				return cerr
			}
			if ce != nil {
				return ce
			}
			// The row we clashed with is gone again (its transaction
			// rolled back, or it was deleted): try again.
		case !retryable(err):
			return err
		}
	}
	return err
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// collision finds the first record of a failed batch whose token or
// lookup key is taken, by a stored row or by an earlier record of the
// batch. The token is looked at first (Lookup false), as the insert of a
// record clashing on both reports it. It returns nil when nothing clashes
// any more. A rare path: one statement more, after the batch failed.
func (s *Store) collision(ctx context.Context, id vault.KeyID, recs []vault.Record, hashes [][]byte) (*vault.CollisionError, error) {
	var lookups [][]byte
	for _, r := range recs {
		if r.Lookup != nil {
			lookups = append(lookups, r.Lookup)
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT token_hash, CASE WHEN key_id = $2 THEN lookup END FROM tokenvault_records
		WHERE token_hash = ANY($1) OR (key_id = $2 AND lookup = ANY($3))`, hashes, id[:], lookups)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	tokens, lks := map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var th, l []byte
		if err := rows.Scan(&th, &l); err != nil {
			return nil, err
		}
		tokens[string(th)] = true
		if l != nil {
			lks[string(l)] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, r := range recs {
		if tokens[string(hashes[i])] {
			return &vault.CollisionError{Index: i}, nil
		}
		tokens[string(hashes[i])] = true
		if r.Lookup != nil {
			if lks[string(r.Lookup)] {
				return &vault.CollisionError{Index: i, Lookup: true}, nil
			}
			lks[string(r.Lookup)] = true
		}
	}
	return nil, nil
}

const recordColumns = `token, key_id, kind, created, expires, lookup, sealed, aad_version`

// recordScan is the destination of recordColumns in a scan.
type recordScan struct {
	r         vault.Record
	token, id []byte
	kind, aad int64
	expires   *time.Time
}

func (x *recordScan) dest() []any {
	return []any{&x.token, &x.id, &x.kind, &x.r.Created, &x.expires, &x.r.Lookup, &x.r.Sealed, &x.aad}
}

func (x *recordScan) record() (vault.Record, error) {
	r := x.r
	if len(x.id) != len(r.KeyID) || x.kind < 0 || x.kind > 255 || (x.aad != vault.RecordAADv1 && x.aad != vault.RecordAADv2) {
		return vault.Record{}, fmt.Errorf("%w: token record", vault.ErrCorrupt)
	}
	r.Token = string(x.token)
	copy(r.KeyID[:], x.id)
	r.Kind = format.Kind(x.kind)
	r.AADVersion = int(x.aad)
	r.Created = r.Created.UTC()
	if x.expires != nil {
		r.Expires = x.expires.UTC()
	}
	return r, nil
}

func scanRecord(row pgx.Row) (vault.Record, error) {
	var x recordScan
	if err := row.Scan(x.dest()...); err != nil {
		return vault.Record{}, notFound(err)
	}
	return x.record()
}

func (s *Store) Record(ctx context.Context, token string) (vault.Record, error) {
	return scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM tokenvault_records WHERE token_hash = $1`, tokenHash(token)))
}

// recordWithKeySQL reads a record and its subject's key in one statement
// (one snapshot): a key shredded or restricted through another replica
// is seen by the same read that finds the record.
const recordWithKeySQL = `SELECT r.token, r.key_id, r.kind, r.created, r.expires, r.lookup, r.sealed, r.aad_version,
		k.key_id, k.wrapped, k.created, k.restricted, k.sealed_subject
	FROM tokenvault_records r LEFT JOIN tokenvault_subject_keys k ON k.key_id = r.key_id
	WHERE r.token_hash = $1`

// RecordWithKey is [vault.RecordKeyStore]: a reveal's one round trip.
func (s *Store) RecordWithKey(ctx context.Context, token string) (vault.Record, string, vault.SubjectKey, error) {
	var x recordScan
	var sk vault.SubjectKey
	var kid, sealed []byte
	var created, restricted *time.Time
	err := s.pool.QueryRow(ctx, recordWithKeySQL, tokenHash(token)).Scan(append(x.dest(), &kid, &sk.Wrapped, &created, &restricted, &sealed)...)
	if err != nil {
		return vault.Record{}, "", sk, notFound(err)
	}
	r, err := x.record()
	if err != nil {
		return r, "", sk, err
	}
	if kid == nil { // no key row joined: shredded
		return r, "", vault.SubjectKey{}, vault.ErrErased
	}
	if created == nil {
		return r, "", sk, fmt.Errorf("%w: subject key without creation time", vault.ErrCorrupt)
	}
	sk.Created = *created
	if sk, err = finishKey(sk, kid, restricted); err != nil {
		return r, "", sk, err
	}
	subject, err := s.ids.OpenSubject(sk.ID, sealed)
	return r, subject, sk, err
}

// RecordsOf is [vault.RecordBatchStore]: one statement for every token
// (the live-token check of a Tokenize call), where Record makes a round
// trip per token.
func (s *Store) RecordsOf(ctx context.Context, tokens []string, found func(i int, r vault.Record) error) error {
	hashes := make([][]byte, len(tokens))
	for i, t := range tokens {
		hashes[i] = tokenHash(t)
	}
	recs, err := s.recordsBy(ctx, func(r vault.Record) string { return r.Token },
		`SELECT `+recordColumns+` FROM tokenvault_records WHERE token_hash = ANY($1)`, hashes)
	if err != nil {
		return err
	}
	for i, t := range tokens {
		if r, ok := recs[t]; ok {
			if err := found(i, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// LookupsOf is [vault.LookupBatchStore]: one statement for the records
// of every lookup (a lookup is its record's column), where Lookup and
// Record make two round trips per field.
func (s *Store) LookupsOf(ctx context.Context, id vault.KeyID, lookups [][]byte, found func(i int, r vault.Record) error) error {
	if len(lookups) == 0 {
		return nil
	}
	recs, err := s.recordsBy(ctx, func(r vault.Record) string { return string(r.Lookup) },
		`SELECT `+recordColumns+` FROM tokenvault_records WHERE key_id = $1 AND lookup = ANY($2)`, id[:], lookups)
	if err != nil {
		return err
	}
	for i, l := range lookups {
		if r, ok := recs[string(l)]; ok && l != nil {
			if err := found(i, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordsBy runs query, which selects recordColumns, and returns its
// records by key. The callers call their found functions once the rows
// are read, not while the connection is busy with them.
func (s *Store) recordsBy(ctx context.Context, key func(vault.Record) string, query string, args ...any) (map[string]vault.Record, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := map[string]vault.Record{}
	for rows.Next() {
		var x recordScan
		if err := rows.Scan(x.dest()...); err != nil {
			return nil, err
		}
		r, err := x.record()
		if err != nil {
			return nil, err
		}
		recs[key(r)] = r
	}
	return recs, rows.Err()
}

func (s *Store) DeleteRecord(ctx context.Context, token string) error {
	// The lookup and the expiry index entry are the row's own columns.
	tag, err := s.pool.Exec(ctx, `DELETE FROM tokenvault_records WHERE token_hash = $1`, tokenHash(token))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrNotFound
	}
	return nil
}

func (s *Store) Lookup(ctx context.Context, id vault.KeyID, lookup []byte) (string, error) {
	var token []byte
	err := s.pool.QueryRow(ctx, `SELECT token FROM tokenvault_records WHERE key_id = $1 AND lookup = $2`, id[:], lookup).Scan(&token)
	return string(token), notFound(err)
}

// ShredSubject is ShredSubjectHolding without holds (holds.go): the key
// row carries the restriction mark and the sealed id, so deleting it is
// the crypto-shred.
func (s *Store) ShredSubject(ctx context.Context, subject string, ledger vault.LedgerEntry) (vault.KeyID, error) {
	return s.ShredSubjectHolding(ctx, subject, ledger, nil)
}

func putLedger(ctx context.Context, tx pgx.Tx, e vault.LedgerEntry) error {
	if len(e.Hash) != ledgerHashSize {
		return fmt.Errorf("pgstore: ledger hash of %d bytes, want %d", len(e.Hash), ledgerHashSize)
	}
	_, err := tx.Exec(ctx, `INSERT INTO tokenvault_ledger (hash, erased_at) VALUES ($1, $2)
		ON CONFLICT (hash) DO UPDATE SET erased_at = GREATEST(tokenvault_ledger.erased_at, excluded.erased_at)`, e.Hash, e.ErasedAt)
	return err
}

func (s *Store) PurgeKey(ctx context.Context, id vault.KeyID) (vault.PurgeCounts, error) {
	var c vault.PurgeCounts
	for {
		var n, lookups int64
		// In batches, so no transaction grows with the subject's data.
		err := s.pool.QueryRow(ctx, `WITH gone AS (
				DELETE FROM tokenvault_records WHERE token_hash IN
					(SELECT token_hash FROM tokenvault_records WHERE key_id = $1 LIMIT $2)
				RETURNING lookup)
			SELECT count(*), count(lookup) FROM gone`, id[:], purgeBatch).Scan(&n, &lookups)
		if err != nil {
			return c, err
		}
		c.Records += n
		c.Lookups += lookups
		if n < purgeBatch {
			break
		}
	}
	if err := s.purgeConsent(ctx, id); err != nil {
		return c, err
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM tokenvault_pending_purges WHERE key_id = $1`, id[:])
	return c, err
}

func (s *Store) PendingPurges(ctx context.Context) ([]vault.KeyID, error) {
	return s.pendingPurges(ctx, `SELECT key_id FROM tokenvault_pending_purges ORDER BY key_id`)
}

// PendingPurgesBefore: shredded_at is the database's now() at the shred,
// compared with its now() here, so replicas' clocks do not matter.
func (s *Store) PendingPurgesBefore(ctx context.Context, age time.Duration) ([]vault.KeyID, error) {
	return s.pendingPurges(ctx, `SELECT key_id FROM tokenvault_pending_purges
		WHERE shredded_at <= now() - make_interval(secs => $1) ORDER BY key_id`, age.Seconds())
}

func (s *Store) pendingPurges(ctx context.Context, query string, args ...any) ([]vault.KeyID, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var ids []vault.KeyID
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var id vault.KeyID
		if copy(id[:], b) != len(id) || len(b) != len(id) {
			rows.Close()
			return nil, fmt.Errorf("%w: pending-purge key id", vault.ErrCorrupt)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *Store) SubjectKeys(ctx context.Context, after string, limit int) ([]vault.SubjectEntry, error) {
	start := []byte{}
	if after != "" {
		var err error
		if start, err = s.hashOf(after); err != nil {
			return nil, err
		}
	}
	rows, err := s.q.Query(ctx, `SELECT key_id, wrapped, created, restricted, sealed_subject FROM tokenvault_subject_keys
		WHERE subject_hash > $1 ORDER BY subject_hash LIMIT $2`, start, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.SubjectEntry
	for rows.Next() {
		var sk vault.SubjectKey
		var id, sealed []byte
		var restricted *time.Time
		if err := rows.Scan(&id, &sk.Wrapped, &sk.Created, &restricted, &sealed); err != nil {
			return nil, err
		}
		if sk, err = finishKey(sk, id, restricted); err != nil {
			return nil, err
		}
		subject, err := s.ids.OpenSubject(sk.ID, sealed)
		if err != nil {
			return nil, err
		}
		out = append(out, vault.SubjectEntry{Subject: subject, Key: sk})
	}
	return out, rows.Err()
}

func (s *Store) ReplaceWrapped(ctx context.Context, subject string, id vault.KeyID, wrapped []byte) error {
	if len(wrapped) == 0 || len(wrapped) > maxWrapped {
		return fmt.Errorf("pgstore: wrapped key size %d out of range", len(wrapped))
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE tokenvault_subject_keys SET wrapped = $3 WHERE subject_hash = $1 AND key_id = $2`, h, id[:], wrapped)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrErased
	}
	return nil
}

func (s *Store) HasSubjectKeys(ctx context.Context) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokenvault_subject_keys) OR EXISTS (SELECT 1 FROM tokenvault_pending_purges)`).Scan(&found)
	return found, err
}

func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tokenvault_records`).Scan(&n)
	return n, err
}
