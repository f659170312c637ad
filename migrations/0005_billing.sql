-- Stripe billing: the tenant's customer and subscription, events recorded by id, credit
-- purchases (for refunds), and the price that names each plan.

ALTER TABLE tenants ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE tenants ADD COLUMN stripe_subscription_id TEXT;
-- 'ok', or 'past_due' from a failed invoice until paid or downgraded at grace_until.
ALTER TABLE tenants ADD COLUMN billing_status TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE tenants ADD COLUMN grace_until INTEGER;
-- The `created` time of the newest subscription event applied: an older one arriving late
-- changes nothing.
ALTER TABLE tenants ADD COLUMN subscription_event_at INTEGER;
CREATE UNIQUE INDEX tenants_stripe_customer ON tenants (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;

ALTER TABLE plans ADD COLUMN stripe_price_id TEXT;

-- Every Stripe event handled, recorded in the same batch as its effect: a duplicate
-- delivery finds its id taken and changes nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     INTEGER NOT NULL,
    tenant_id   TEXT REFERENCES tenants (id),
    batch_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL
);

-- Credits bought through Checkout, so that a refunded charge claws back its share.
CREATE TABLE credit_purchases (
    checkout_session_id TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    payment_intent      TEXT,
    credits             INTEGER NOT NULL CHECK (credits > 0),
    clawed_back         INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL
);
CREATE INDEX credit_purchases_payment_intent ON credit_purchases (payment_intent);
