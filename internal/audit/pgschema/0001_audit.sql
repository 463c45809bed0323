-- The audit log in the database (internal/audit/pgsink.go): one row per
-- line of a replica's chain, the line byte for byte as the file holds it
-- (without its newline), so that the file's verifier checks it.
CREATE TABLE tokenvault_audit (
    replica        text        NOT NULL,
    seq            bigint      NOT NULL,
    time           timestamptz NOT NULL,
    -- Keyed hashes (audit.SubjectHasher, the log's TokenHasher), never
    -- subject ids or tokens: what the per-subject trail is found by.
    subject_hashes text[]      NOT NULL DEFAULT '{}',
    token_hashes   text[]      NOT NULL DEFAULT '{}',
    line           bytea       NOT NULL,
    PRIMARY KEY (replica, seq)
);
CREATE INDEX tokenvault_audit_subjects ON tokenvault_audit USING gin (subject_hashes);
CREATE INDEX tokenvault_audit_tokens ON tokenvault_audit USING gin (token_hashes);
