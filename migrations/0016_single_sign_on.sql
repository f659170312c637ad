-- Single sign-on with OpenID Connect (shared/src/auth/sso/).

-- A tenant's identity providers; the client secret is sealed with the master key.
CREATE TABLE sso_providers (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    name                 TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('oidc', 'google', 'microsoft')),
    issuer               TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    scopes               TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX sso_providers_tenant ON sso_providers (tenant_id);

-- Email domains whose verified users join the tenant on their first sign-in. A domain is
-- the tenant's once proven (a DNS TXT record, or an operator's approval), and then no other
-- tenant's.
CREATE TABLE sso_domains (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    domain        TEXT NOT NULL,
    proof         TEXT NOT NULL,
    verified_at   INTEGER,
    verified_by   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);
CREATE UNIQUE INDEX sso_domains_owner ON sso_domains (domain) WHERE verified_at IS NOT NULL;

ALTER TABLE tenants ADD COLUMN sso_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN sso_default_role TEXT NOT NULL DEFAULT 'member'
    CHECK (sso_default_role IN ('admin', 'member', 'viewer'));

-- Who a provider's subject is here: linked once, found by it ever after.
CREATE TABLE sso_identities (
    provider_id TEXT NOT NULL REFERENCES sso_providers (id),
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (provider_id, subject)
);

-- A sign-in under way: its state (hashed), nonce and PKCE verifier, used once.
CREATE TABLE sso_attempts (
    state_hash    TEXT PRIMARY KEY,
    provider_id   TEXT NOT NULL REFERENCES sso_providers (id),
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    return_to     TEXT,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);

-- Discovery documents and key sets, kept for a bounded time.
CREATE TABLE oidc_documents (
    url        TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    fetched_at INTEGER NOT NULL
);
