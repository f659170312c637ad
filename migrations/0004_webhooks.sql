-- Outgoing webhooks: tenant endpoints, their secrets, and the deliveries of outbox events.

-- A tenant's receiver. The secret is kept as issued (`whsec_…`), not hashed: every delivery
-- is signed with it. After a rotation the previous secret signs too until it expires.
CREATE TABLE webhook_endpoints (
    id                         TEXT PRIMARY KEY,
    tenant_id                  TEXT NOT NULL REFERENCES tenants (id),
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL DEFAULT '',
    -- A JSON array of event types; '*' is every type, 'credits.*' every credits event.
    event_types                TEXT NOT NULL,
    enabled                    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    -- Why a disabled endpoint is off: its owner said so, it answered 410 Gone, or it kept
    -- failing through the whole retry schedule.
    disabled_reason            TEXT CHECK (disabled_reason IN ('manual', 'gone', 'failing')),
    disabled_at                INTEGER,
    -- Names the delivery step that disabled it, so that the notice to the tenant's owners
    -- is queued by that step only, in the same batch.
    disabled_token             TEXT,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    CHECK ((enabled = 1) = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- One message for one endpoint: an outbox event fanned out, a test message, sent until it
-- succeeds or the retry schedule runs out. The payload is stored as sent, so every retry
-- signs the same bytes; `message_id` is the `webhook-id` receivers deduplicate by, and the
-- unique pair is what makes a fan-out that runs twice create each delivery once.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    message_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Attempts made in all; failures since the delivery was last (re)queued, which is its
    -- place in the retry schedule.
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    -- A sender claims due deliveries by setting both in one UPDATE; a sender that dies
    -- leaves a lease that runs out, and the delivery is claimed again.
    lease_id         TEXT,
    locked_until     INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    succeeded_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (endpoint_id, message_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_lease ON webhook_deliveries (lease_id) WHERE lease_id IS NOT NULL;

-- What each attempt got back: the status or why there was none, and the start of the body.
CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempt          INTEGER NOT NULL,
    -- 'cron', or 'manual' for a redelivery or a test message sent from the API.
    source           TEXT NOT NULL CHECK (source IN ('cron', 'manual')),
    status_code      INTEGER,
    -- An outbound error kind (connect, timeout, refused_address…) when no response came.
    error            TEXT,
    error_message    TEXT,
    response_excerpt TEXT,
    attempted_at     INTEGER NOT NULL,
    UNIQUE (delivery_id, attempt)
);
