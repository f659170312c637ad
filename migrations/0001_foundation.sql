-- The foundation: plans, tenants, users, sessions, API keys, invitations, one-time tokens,
-- the email outbox, platform admins and rate-limit windows.
-- Times are Unix seconds (INTEGER). Ids are UUIDs (TEXT) minted by the application, so a
-- batch can refer to rows it is creating without a round trip.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    plan_code     TEXT NOT NULL DEFAULT 'FREE' CHECK (plan_code IN ('FREE', 'PRO', 'ENTERPRISE')),
    custom_domain TEXT UNIQUE,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);

CREATE TABLE plans (
    id                  TEXT PRIMARY KEY,
    code                TEXT NOT NULL CHECK (code IN ('FREE', 'PRO', 'ENTERPRISE')),
    -- NULL for the global plan; a row with a tenant's id overrides the global one for it.
    tenant_id           TEXT REFERENCES tenants (id),
    name                TEXT NOT NULL,
    requests_per_minute INTEGER NOT NULL CHECK (requests_per_minute > 0),
    max_users           INTEGER NOT NULL CHECK (max_users > 0),
    max_api_keys        INTEGER NOT NULL CHECK (max_api_keys > 0),
    monthly_credits     INTEGER NOT NULL CHECK (monthly_credits >= 0),
    priority            INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX plans_global_code ON plans (code) WHERE tenant_id IS NULL;
CREATE UNIQUE INDEX plans_tenant_code ON plans (tenant_id, code) WHERE tenant_id IS NOT NULL;

INSERT INTO plans (id, code, tenant_id, name, requests_per_minute, max_users, max_api_keys, monthly_credits, priority, created_at, updated_at) VALUES
    ('plan-free',       'FREE',       NULL, 'Free',       60,   3,    5,    100,    0,  0, 0),
    ('plan-pro',        'PRO',        NULL, 'Pro',        600,  25,   50,   10000,  10, 0, 0),
    ('plan-enterprise', 'ENTERPRISE', NULL, 'Enterprise', 6000, 1000, 1000, 250000, 20, 0, 0);

CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    email             TEXT NOT NULL,
    name              TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    role              TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    email_verified_at INTEGER,
    last_login_at     INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
-- A deleted user's address may be invited again.
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, email) WHERE status = 'active';
CREATE INDEX users_tenant ON users (tenant_id, created_at);

-- One session per login: the family of its rotating refresh tokens.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    ip             TEXT,
    user_agent     TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash     TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    rotated_at     INTEGER,
    successor_hash TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL REFERENCES users (id),
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, created_at);

-- Single-use tokens sent by email (password reset, email verification); only the hash is kept.
CREATE TABLE one_time_tokens (
    token_hash TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE email_outbox (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT REFERENCES tenants (id),
    recipient  TEXT NOT NULL,
    template   TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
);
CREATE INDEX email_outbox_pending ON email_outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE platform_admins (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Fixed-window counters: one row per (bucket, window start).
CREATE TABLE rate_limit_windows (
    bucket       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
) WITHOUT ROWID;
