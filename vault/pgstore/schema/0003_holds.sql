-- tokenvault PostgreSQL store, schema version 3: legal holds at erasure
-- (vault.HoldStore, holds.go).
--
-- A hold key is an ordinary row of tokenvault_subject_keys (of a
-- pseudo-subject, hashed like any other); these tables add its schedule
-- once the real subject is erased, and the receipts of hold shreds. No
-- subject id in the clear: the schedule is under the hold key's id, the
-- receipts under the real subject's keyed hash (a hold-shred receipt
-- names no subject id).

-- One scheduled hold per hold key: held until until_ns (Unix
-- nanoseconds, as erasure events), then shredded. Deleted by the hold's
-- shred.
CREATE TABLE tokenvault_holds (
	key_id       bytea  NOT NULL PRIMARY KEY,
	class        text   NOT NULL,
	erased_at_ns bigint NOT NULL,
	until_ns     bigint NOT NULL
);
-- The due index (DueHolds): earliest end first.
CREATE INDEX tokenvault_holds_due ON tokenvault_holds (until_ns, key_id);

-- Receipts of hold shreds, by the real subject's hash (the subject-key
-- hash, vault.StoreSubjectHash), in the order they were made. They
-- outlive what they are about, like the ledger.
CREATE TABLE tokenvault_hold_receipts (
	subject_hash bytea  NOT NULL,
	made_ns      bigint NOT NULL,
	key_id       bytea  NOT NULL,
	receipt      bytea  NOT NULL,
	PRIMARY KEY (subject_hash, made_ns, key_id)
);
