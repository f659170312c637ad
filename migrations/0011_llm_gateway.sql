-- The LLM gateway (shared/src/llm): provider keys sealed at rest, the model catalogue, and
-- the record of every call.

-- A provider account the gateway calls: the platform's own (tenant_id NULL, usable by global
-- and tenant models) or a tenant's (bring your own key, usable by that tenant's models only).
CREATE TABLE llm_provider_keys (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT REFERENCES tenants (id),
    name           TEXT NOT NULL,
    -- `llm::providers::Kind`: which wire format the provider speaks.
    kind           TEXT NOT NULL CHECK (kind IN ('openai', 'anthropic')),
    base_url       TEXT NOT NULL,
    -- `<master key id>:<base64(nonce || ciphertext)>`: ChaCha20-Poly1305 under a master key of
    -- TOLLGATE_SECRETS_KEYS, bound to this row's id (shared/src/secrets.rs). Never returned.
    api_key_sealed TEXT NOT NULL,
    -- All the API shows of the key.
    api_key_last4  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX llm_provider_keys_owner ON llm_provider_keys (tenant_id, created_at);

-- The catalogue: global rows (tenant_id NULL, the platform's) and tenant rows, which add
-- models or override the global one of the same name for that tenant (as plans do).
CREATE TABLE llm_models (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT REFERENCES tenants (id),
    -- What clients name in `model`, and the other names they may use; unique among the
    -- names and aliases of the same owner (checked by the statements that write them).
    name                TEXT NOT NULL,
    aliases             TEXT NOT NULL DEFAULT '[]',
    -- JSON `[{"provider_key_id", "model"}]` in fallback order.
    deployments         TEXT NOT NULL,
    context_window      INTEGER NOT NULL CHECK (context_window > 0),
    max_output_tokens   INTEGER NOT NULL CHECK (max_output_tokens > 0),
    -- Credits per million tokens.
    input_price         INTEGER NOT NULL CHECK (input_price >= 0),
    output_price        INTEGER NOT NULL CHECK (output_price >= 0),
    cached_input_price  INTEGER NOT NULL CHECK (cached_input_price >= 0),
    -- JSON array of plan codes that may use the model; NULL: every plan.
    plans               TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX llm_models_name ON llm_models (COALESCE(tenant_id, ''), name);

-- One row per call that reached the providers (after its credit hold). Token counts and the
-- cost are what the provider reported and what was charged; no prompt or completion text.
CREATE TABLE llm_interactions (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    user_id           TEXT NOT NULL,
    -- The API key the call came with; NULL for an access token.
    api_key_id        TEXT,
    -- The OpenAI route the call came through.
    endpoint          TEXT NOT NULL CHECK (endpoint IN ('chat', 'embeddings')),
    -- The catalogue's name of the model, and what the client wrote (a name or an alias).
    model             TEXT NOT NULL,
    requested_model   TEXT NOT NULL,
    -- The deployment that answered (or was tried last).
    provider_key_id   TEXT,
    deployment_model  TEXT,
    attempts          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    cost              INTEGER NOT NULL DEFAULT 0,
    reservation_id    TEXT,
    latency_ms        INTEGER NOT NULL,
    -- A stream's time to its first event; NULL for an answer sent whole.
    first_token_ms    INTEGER,
    status            TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error             TEXT,
    created_at        INTEGER NOT NULL
);
CREATE INDEX llm_interactions_tenant_time ON llm_interactions (tenant_id, created_at);
CREATE INDEX llm_interactions_user_time ON llm_interactions (tenant_id, user_id, created_at);

-- What platform admins change outside every tenant (the platform's provider keys, the global
-- catalogue). Tenants' changes stay in their own hash-chained audit_log.
CREATE TABLE platform_audit_log (
    id          TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    ip          TEXT,
    user_agent  TEXT,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX platform_audit_log_time ON platform_audit_log (created_at);
