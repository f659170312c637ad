-- What a tenant decides about its users' LLM calls (shared/src/llm/policy.rs): which models
-- its users see, which models each user may call, and whether the text of calls is kept; and
-- the per-minute limits of LLM calls (shared/src/llm/limits.rs).

-- The whole tenant's LLM calls and tokens per minute (NULL: no limit).
ALTER TABLE plans ADD COLUMN llm_requests_per_minute INTEGER;
ALTER TABLE plans ADD COLUMN llm_tokens_per_minute INTEGER;
-- Each API key's LLM tokens per minute (NULL: no limit of the key's own).
ALTER TABLE plans ADD COLUMN llm_key_tokens_per_minute INTEGER;
UPDATE plans SET llm_requests_per_minute = 60, llm_tokens_per_minute = 100000
    WHERE code = 'FREE' AND tenant_id IS NULL;
UPDATE plans SET llm_requests_per_minute = 3000, llm_tokens_per_minute = 2000000
    WHERE code = 'PRO' AND tenant_id IS NULL;

-- One row per tenant that changed the defaults (no row: every model the catalogue gives the
-- tenant is shown, and no text is kept).
CREATE TABLE llm_tenant_settings (
    tenant_id              TEXT PRIMARY KEY REFERENCES tenants (id),
    -- JSON array of the catalogue's model names the tenant's users see and may call; NULL:
    -- all of them.
    visible_models         TEXT,
    -- Whether prompts and completions are kept (llm_interaction_contents), and for how long.
    content_logging        INTEGER NOT NULL DEFAULT 0 CHECK (content_logging IN (0, 1)),
    content_retention_days INTEGER NOT NULL DEFAULT 30
                           CHECK (content_retention_days BETWEEN 1 AND 3650),
    -- Each user's LLM calls and tokens per minute (NULL: no limit of the user's own).
    user_requests_per_minute INTEGER CHECK (user_requests_per_minute > 0),
    user_tokens_per_minute   INTEGER CHECK (user_tokens_per_minute > 0),
    updated_at             INTEGER NOT NULL
);

-- A user's allow-list: the only models (catalogue names) this user may call. No row: every
-- model the tenant shows.
CREATE TABLE llm_user_models (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    models     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- The text of a call, kept only while its tenant logs content, until its retention ends.
CREATE TABLE llm_interaction_contents (
    interaction_id TEXT PRIMARY KEY REFERENCES llm_interactions (id),
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    -- JSON: the request's `messages` (chat) or `input` (embeddings).
    request        TEXT NOT NULL,
    -- JSON: the answer's messages, one per choice; NULL when there is no text to keep
    -- (embeddings, or no answer).
    response       TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX llm_interaction_contents_tenant_time ON llm_interaction_contents (tenant_id, created_at);
