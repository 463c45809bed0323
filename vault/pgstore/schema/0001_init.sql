-- tokenvault PostgreSQL store, schema version 1.
--
-- No column or index holds a subject id in the clear: subjects are
-- addressed by subject_hash (vault.StoreSubjectHash, a keyed hash under
-- the ledger key) and the id itself is kept sealed (vault.StoreSealKey) in
-- sealed_subject, deleted with the key by an erasure. Tokens are addressed
-- by their SHA-256 (a generic token may be far larger than a btree entry).
-- Plain types only (bytea, text, timestamptz, bigint) and no feature that
-- PostgreSQL-compatible distributed engines lack.

-- One data key per subject. restricted: processing restricted since then.
CREATE TABLE tokenvault_subject_keys (
	subject_hash   bytea       NOT NULL PRIMARY KEY,
	key_id         bytea       NOT NULL UNIQUE,
	wrapped        bytea       NOT NULL,
	created        timestamptz NOT NULL,
	restricted     timestamptz,
	sealed_subject bytea       NOT NULL
);

-- Token records. (key_id, lookup) is the deterministic lookup, unique
-- per key (rows without a lookup have a NULL one, which never clashes).
CREATE TABLE tokenvault_records (
	token_hash  bytea       NOT NULL PRIMARY KEY,
	token       bytea       NOT NULL,
	key_id      bytea       NOT NULL,
	kind        bigint      NOT NULL,
	created     timestamptz NOT NULL,
	expires     timestamptz,
	lookup      bytea,
	sealed      bytea       NOT NULL,
	aad_version bigint      NOT NULL,
	CONSTRAINT tokenvault_records_lookup_key UNIQUE (key_id, lookup)
);
-- A key's records in a stable order: the purge after an erasure and the
-- resumable export.
CREATE INDEX tokenvault_records_key ON tokenvault_records (key_id, token_hash);
-- The expiry index of the retention purge: only records that expire.
CREATE INDEX tokenvault_records_expires ON tokenvault_records (expires) WHERE expires IS NOT NULL;

-- Shredded keys whose records are not purged yet (a crash in between).
CREATE TABLE tokenvault_pending_purges (
	key_id      bytea       NOT NULL PRIMARY KEY,
	shredded_at timestamptz NOT NULL
);

-- The erasure ledger: HMAC of the subject id under the ledger key.
CREATE TABLE tokenvault_ledger (
	hash      bytea       NOT NULL PRIMARY KEY,
	erased_at timestamptz NOT NULL
);

-- Leases of background jobs that one replica at a time runs.
CREATE TABLE tokenvault_leases (
	name       text        NOT NULL PRIMARY KEY,
	holder     text        NOT NULL,
	expires_at timestamptz NOT NULL
);

-- Store facts: id_key_check, a check value of the subject-id key, so that
-- a replica with another ledger key is refused instead of creating a
-- second key for every subject.
CREATE TABLE tokenvault_meta (
	name  text  NOT NULL PRIMARY KEY,
	value bytea NOT NULL
);
