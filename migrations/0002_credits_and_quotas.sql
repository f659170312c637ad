-- Credits (accounts, ledger, two-phase reservations, alerts, auto top-up), the event
-- outbox, usage counters with their limits, and the plan limits checked before any work.

-- One pool per tenant (id 'pool:<tenant id>') and one account per user who has spent or
-- been given an allowance (id 'user:<user id>'). The ids are derived, so a batch can create
-- an account on first use with INSERT OR IGNORE and refer to it without a round trip.
CREATE TABLE credit_accounts (
    id                       TEXT PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants (id),
    -- NULL for the tenant's pool.
    user_id                  TEXT REFERENCES users (id),
    -- A user's allowance; NULL when the user has none and only the pool limits the spend.
    total                    INTEGER,
    used                     INTEGER NOT NULL DEFAULT 0,
    reserved                 INTEGER NOT NULL DEFAULT 0,
    alert_thresholds         TEXT NOT NULL DEFAULT '[80,95,100]',
    blocked_at               INTEGER,
    -- The batch that blocked the account, so that batch alone reports it.
    blocked_by               TEXT,
    auto_topup_enabled       INTEGER NOT NULL DEFAULT 0,
    auto_topup_threshold     INTEGER NOT NULL DEFAULT 0,
    auto_topup_amount        INTEGER NOT NULL DEFAULT 0,
    auto_topup_max_per_month INTEGER NOT NULL DEFAULT 0,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    CONSTRAINT credits_not_negative CHECK (used >= 0 AND reserved >= 0 AND (total IS NULL OR total >= 0)),
    -- The money invariant: nothing is spent or held beyond what the account holds. A
    -- statement that would break it fails, and with it the whole batch.
    CONSTRAINT credits_cover_spend CHECK (total IS NULL OR used + reserved <= total),
    CHECK (user_id IS NOT NULL OR total IS NOT NULL)
);
CREATE INDEX credit_accounts_tenant ON credit_accounts (tenant_id);

-- Every movement of credits. The deltas are what the movement did to the account, so the
-- ledger sums to the balance: SUM(total_delta) = total, and so on.
CREATE TABLE credit_ledger (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    account_id      TEXT NOT NULL REFERENCES credit_accounts (id),
    kind            TEXT NOT NULL CHECK (kind IN
                        ('grant', 'purchase', 'reserve', 'settle', 'release', 'refund', 'expire', 'adjustment', 'allowance')),
    total_delta     INTEGER NOT NULL DEFAULT 0,
    used_delta      INTEGER NOT NULL DEFAULT 0,
    reserved_delta  INTEGER NOT NULL DEFAULT 0,
    reason          TEXT,
    actor_id        TEXT,
    reservation_id  TEXT,
    model           TEXT,
    job_id          TEXT,
    request_id      TEXT,
    idempotency_key TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    -- Replaying a request never moves money twice.
    UNIQUE (account_id, kind, idempotency_key)
);
CREATE INDEX credit_ledger_account ON credit_ledger (account_id, created_at);

CREATE TABLE credit_reservations (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    status          TEXT NOT NULL CHECK (status IN ('held', 'settled', 'released')),
    actual          INTEGER,
    charged         INTEGER,
    reason          TEXT,
    model           TEXT,
    job_id          TEXT,
    idempotency_key TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    refunded_at     INTEGER,
    UNIQUE (tenant_id, idempotency_key)
);

-- A threshold crossed, once per account, threshold and month.
CREATE TABLE credit_alerts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    account_id  TEXT NOT NULL REFERENCES credit_accounts (id),
    threshold   INTEGER NOT NULL,
    period      TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    UNIQUE (account_id, threshold, period)
);

CREATE TABLE credit_topup_requests (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    account_id TEXT NOT NULL REFERENCES credit_accounts (id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    period     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'charging', 'charged', 'failed')),
    batch_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX credit_topup_requests_account ON credit_topup_requests (account_id, period);

-- Events written in the same batch as the change they report; cron delivers them.
CREATE TABLE outbox_events (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    type         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX outbox_events_pending ON outbox_events (created_at) WHERE delivered_at IS NULL;

-- Plan limits checked before any work; NULL means no limit.
ALTER TABLE plans ADD COLUMN max_width INTEGER;
ALTER TABLE plans ADD COLUMN max_height INTEGER;
ALTER TABLE plans ADD COLUMN max_pixels INTEGER;
ALTER TABLE plans ADD COLUMN max_vram_mb INTEGER;
ALTER TABLE plans ADD COLUMN max_batch_size INTEGER;
ALTER TABLE plans ADD COLUMN max_concurrent_jobs INTEGER;
-- A JSON array of model names, or NULL for any model.
ALTER TABLE plans ADD COLUMN allowed_models TEXT;
ALTER TABLE plans ADD COLUMN daily_jobs INTEGER;
ALTER TABLE plans ADD COLUMN monthly_jobs INTEGER;
ALTER TABLE plans ADD COLUMN daily_gpu_seconds INTEGER;
ALTER TABLE plans ADD COLUMN monthly_gpu_seconds INTEGER;
ALTER TABLE plans ADD COLUMN daily_llm_tokens INTEGER;
ALTER TABLE plans ADD COLUMN monthly_llm_tokens INTEGER;

UPDATE plans SET max_width = 1024, max_height = 1024, max_pixels = 1048576, max_vram_mb = 12288,
    max_batch_size = 2, max_concurrent_jobs = 1,
    allowed_models = '["sd_xl_base_1.0.safetensors","v1-5-pruned-emaonly.safetensors"]',
    daily_jobs = 50, monthly_jobs = 500, daily_gpu_seconds = 1800, monthly_gpu_seconds = 18000,
    daily_llm_tokens = 100000, monthly_llm_tokens = 1000000
    WHERE code = 'FREE';
UPDATE plans SET max_width = 2048, max_height = 2048, max_pixels = 4194304, max_vram_mb = 24576,
    max_batch_size = 8, max_concurrent_jobs = 4, allowed_models = NULL,
    daily_jobs = 1000, monthly_jobs = 20000, daily_gpu_seconds = 36000, monthly_gpu_seconds = 720000,
    daily_llm_tokens = 2000000, monthly_llm_tokens = 40000000
    WHERE code = 'PRO';
UPDATE plans SET max_width = 8192, max_height = 8192, max_pixels = 33554432, max_vram_mb = 81920,
    max_batch_size = 64, max_concurrent_jobs = 32, allowed_models = NULL
    WHERE code = 'ENTERPRISE';

-- A tenant's (user_id '') or a user's own limit for one counter, overriding the plan's.
CREATE TABLE quota_limits (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    user_id     TEXT NOT NULL,
    metric      TEXT NOT NULL CHECK (metric IN ('jobs', 'gpu_seconds', 'llm_tokens')),
    period      TEXT NOT NULL CHECK (period IN ('day', 'month')),
    limit_value INTEGER CHECK (limit_value IS NULL OR limit_value >= 0),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, metric, period)
) WITHOUT ROWID;

-- Consumption per tenant (user_id '') and per user, per day and per month. The limit in
-- force is written with every increment, so the CHECK refuses an increment past it.
CREATE TABLE usage_counters (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    user_id      TEXT NOT NULL,
    metric       TEXT NOT NULL CHECK (metric IN ('jobs', 'gpu_seconds', 'llm_tokens')),
    period       TEXT NOT NULL CHECK (period IN ('day', 'month')),
    period_start INTEGER NOT NULL,
    value        INTEGER NOT NULL,
    limit_value  INTEGER,
    updated_at   INTEGER NOT NULL,
    CONSTRAINT quota_exceeded CHECK (limit_value IS NULL OR value <= limit_value),
    PRIMARY KEY (tenant_id, user_id, metric, period, period_start)
) WITHOUT ROWID;

-- The tenant's usage report lists every user's counters of the current month.
CREATE INDEX usage_counters_tenant_period ON usage_counters (tenant_id, period, period_start);

-- Recorded usage events by idempotency key, so a retried event is counted once.
CREATE TABLE usage_events (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    idempotency_key TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    metric          TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    batch_id        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
) WITHOUT ROWID;
