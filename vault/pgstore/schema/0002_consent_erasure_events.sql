-- tokenvault PostgreSQL store, schema version 2: consent per purpose
-- (vault.ConsentStore, consent.go) and erasure events
-- (vault.ErasureEventStore, events.go).
--
-- As in version 1, nothing here holds a subject id in the clear: consent
-- entries live under the subject's key id and are sealed by the vault
-- (the purpose only as a keyed hash, tag); an event's subject id and
-- receipt are sealed under vault.StoreSealKey and set to NULL once
-- dropped.

-- A key's consent history: seq counts from 1 per key id, in append
-- order. The purge after an erasure deletes the key's rows.
CREATE TABLE tokenvault_consent (
	key_id bytea  NOT NULL,
	seq    bigint NOT NULL,
	tag    bytea  NOT NULL,
	sealed bytea  NOT NULL,
	PRIMARY KEY (key_id, seq)
);
-- The latest entry per purpose: the last seq of (key_id, tag).
CREATE INDEX tokenvault_consent_latest ON tokenvault_consent (key_id, tag, seq);

-- Counters updated in the transaction that uses them. erasure_events is
-- the last erasure event's number: the shred's transaction increments it
-- (UPDATE ... RETURNING), which holds the row until it commits, so
-- numbers are given in commit order (a sequence would not be: a lower
-- number could commit after a higher one and be skipped by a consumer).
CREATE TABLE tokenvault_counters (
	name text   NOT NULL PRIMARY KEY,
	n    bigint NOT NULL
);
INSERT INTO tokenvault_counters (name, n) VALUES ('erasure_events', 0);

-- The erasure event log. erased_at_ns: Unix nanoseconds (the receipt's
-- time exactly; timestamptz keeps microseconds). sealed_subject and
-- sealed_receipt are NULL once dropped (acknowledged by every consumer
-- or past the retention); sealed_receipt is NULL until attached.
CREATE TABLE tokenvault_erasure_events (
	seq            bigint NOT NULL PRIMARY KEY,
	erased_at_ns   bigint NOT NULL,
	key_id         bytea  NOT NULL,
	sealed_subject bytea,
	sealed_receipt bytea
);
-- The trim by retention reads only events past it.
CREATE INDEX tokenvault_erasure_events_erased_at ON tokenvault_erasure_events (erased_at_ns);

-- One durable cursor per registered consumer: the last seq acknowledged.
CREATE TABLE tokenvault_erasure_cursors (
	consumer text   NOT NULL PRIMARY KEY,
	acked    bigint NOT NULL
);
