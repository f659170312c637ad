-- The tamper-evident audit log: append-only entries, hash-chained per tenant.
--
-- An entry is appended in the same batch as the change it records, with the next sequence
-- number of its tenant and no hash: SQLite cannot compute SHA-256, and reading the previous
-- hash in one round trip to write the next in another would race. Sealing (shared/src/audit)
-- then reads a tenant's unsealed entries in sequence order and writes each one's
-- `prev_hash` and `hash`; the values are deterministic, so two sealers at once agree.

CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    -- 1, 2, 3 ... per tenant, without gaps: the order of the chain.
    seq           INTEGER NOT NULL CHECK (seq > 0),
    action        TEXT NOT NULL,
    actor_type    TEXT NOT NULL CHECK (actor_type IN ('user', 'api_key', 'platform_admin', 'system', 'anonymous')),
    -- The user (user), the key (api_key), the admin (platform_admin), the component (system).
    actor_id      TEXT,
    -- The tenant user on whose behalf the actor acted: the user, or the key's owner.
    actor_user_id TEXT,
    target_type   TEXT,
    target_id     TEXT,
    ip            TEXT,
    user_agent    TEXT,
    -- A JSON object, stored as written: the hash covers these exact bytes.
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    -- Both NULL until sealed.
    prev_hash     TEXT,
    hash          TEXT,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_log_unsealed ON audit_log (tenant_id, seq) WHERE hash IS NULL;
CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, created_at);

-- Per tenant: how far the chain is sealed (its head), and the last entry retention pruned
-- (the checkpoint verification starts from). Sealing and pruning only move these forward.
CREATE TABLE audit_chains (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
    sealed_seq  INTEGER NOT NULL DEFAULT 0,
    sealed_hash TEXT NOT NULL,
    pruned_seq  INTEGER NOT NULL DEFAULT 0,
    pruned_hash TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK (pruned_seq <= sealed_seq)
);

-- Append-only, in SQL: content never changes, a hash is written once, and only entries at or
-- below the tenant's pruning checkpoint may be deleted. (Someone with the database file can
-- drop these; the hash chain is what makes that detectable.)
CREATE TRIGGER audit_log_content_is_immutable
BEFORE UPDATE OF id, tenant_id, seq, action, actor_type, actor_id, actor_user_id, target_type,
                 target_id, ip, user_agent, metadata, created_at ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log entries are append-only');
END;

CREATE TRIGGER audit_log_sealed_once
BEFORE UPDATE OF prev_hash, hash ON audit_log
WHEN OLD.hash IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'audit_log entries are sealed once');
END;

CREATE TRIGGER audit_log_pruned_only
BEFORE DELETE ON audit_log
WHEN OLD.seq > COALESCE((SELECT pruned_seq FROM audit_chains WHERE tenant_id = OLD.tenant_id), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit_log entries are deleted only by retention');
END;

-- How long a plan keeps audit entries; a tenant's plan override may change it.
ALTER TABLE plans ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 30
    CHECK (audit_retention_days > 0);
UPDATE plans SET audit_retention_days = 30 WHERE code = 'FREE';
UPDATE plans SET audit_retention_days = 365 WHERE code = 'PRO';
UPDATE plans SET audit_retention_days = 2555 WHERE code = 'ENTERPRISE';
