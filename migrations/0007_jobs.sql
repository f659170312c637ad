-- GPU jobs: worker pools, bots, runner tokens and runners, and the job queue.

-- Dedicated workers a tenant may create besides its default one; NULL is no limit.
ALTER TABLE plans ADD COLUMN max_workers INTEGER;
UPDATE plans SET max_workers = 1 WHERE code = 'FREE';
UPDATE plans SET max_workers = 10 WHERE code = 'PRO';
UPDATE plans SET max_workers = 100 WHERE code = 'ENTERPRISE';

-- An execution pool. tenant_id NULL: a shared platform pool every tenant may use.
CREATE TABLE workers (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT REFERENCES tenants (id),
    name            TEXT NOT NULL,
    is_default      INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    gpu_type        TEXT,
    min_vram_mb     INTEGER NOT NULL DEFAULT 0 CHECK (min_vram_mb >= 0),
    max_concurrency INTEGER CHECK (max_concurrency IS NULL OR max_concurrency > 0),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX workers_tenant_default ON workers (tenant_id) WHERE is_default = 1;
CREATE UNIQUE INDEX workers_tenant_name ON workers (tenant_id, name) WHERE tenant_id IS NOT NULL;

INSERT INTO workers (id, tenant_id, name, is_default, created_at, updated_at)
    SELECT lower(hex(randomblob(16))), id, 'default', 1, created_at, created_at FROM tenants;
INSERT INTO workers (id, tenant_id, name, is_default, created_at, updated_at)
    VALUES ('shared', NULL, 'shared', 0, 0, 0);

-- A saved workflow template, assigned to a worker.
CREATE TABLE bots (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    worker_id  TEXT NOT NULL REFERENCES workers (id),
    name       TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX bots_tenant ON bots (tenant_id, created_at);

-- A runner token (`tgr_...`), SHA-256 at rest; one token is one runner's identity.
CREATE TABLE runner_tokens (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT REFERENCES tenants (id),
    worker_id  TEXT NOT NULL REFERENCES workers (id),
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX runner_tokens_worker ON runner_tokens (worker_id);

-- What a runner last said about itself (register and heartbeats).
CREATE TABLE runners (
    token_id      TEXT PRIMARY KEY REFERENCES runner_tokens (id),
    worker_id     TEXT NOT NULL REFERENCES workers (id),
    host          TEXT NOT NULL,
    gpu           TEXT,
    vram_mb       INTEGER,
    version       TEXT,
    registered_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX runners_worker ON runners (worker_id);

CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    user_id             TEXT NOT NULL REFERENCES users (id),
    worker_id           TEXT NOT NULL REFERENCES workers (id),
    bot_id              TEXT REFERENCES bots (id),
    status              TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority            INTEGER NOT NULL DEFAULT 0,
    workflow            TEXT NOT NULL,
    request_hash        TEXT NOT NULL,
    estimated_cost      INTEGER NOT NULL,
    estimated_vram_mb   INTEGER NOT NULL,
    reservation_id      TEXT NOT NULL,
    idempotency_key     TEXT NOT NULL,
    time_limit_seconds  INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    available_at        INTEGER NOT NULL,
    runner_token_id     TEXT,
    lease_id            TEXT,
    lease_expires_at    INTEGER,
    cancel_requested_at INTEGER,
    progress            INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    current_node        TEXT,
    outputs             TEXT,
    error               TEXT,
    gpu_seconds         INTEGER,
    peak_vram_mb        INTEGER,
    -- The id of the one request or cron run that finished the job: what later statements of
    -- its batch (settle, counters, outbox) are guarded on, so a retry applies nothing twice.
    finish_id           TEXT,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    updated_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_tenant_key ON jobs (tenant_id, idempotency_key);
CREATE INDEX jobs_queue ON jobs (worker_id, status, available_at);
CREATE INDEX jobs_tenant_status ON jobs (tenant_id, status);
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
