-- Scheduled usage reports, and delivery state for the email outbox.

-- One usage report per tenant, kind and period, built by cron once the period has ended.
-- The period's counters and ledger rows no longer change by then, so a report is built
-- once and never rewritten; the unique triple is what makes two cron runs that build at
-- the same moment store (and announce) it once.
CREATE TABLE usage_reports (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    kind         TEXT NOT NULL CHECK (kind IN ('daily', 'monthly')),
    -- 'YYYY-MM-DD' for a daily report, 'YYYY-MM' for a monthly one (UTC).
    period       TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end   INTEGER NOT NULL,
    -- The report as JSON: tenant usage, per-user usage, credits of the tenant pool.
    content      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, kind, period)
);
CREATE INDEX usage_reports_list ON usage_reports (tenant_id, kind, period_start);

-- Email delivery. A sender claims due mails by setting the lease columns in one UPDATE, so
-- two cron runs never send the same mail; a sender that dies leaves a lease that runs out.
-- A mail is pending until `sent_at` (the provider accepted it) or `failed_at` (rejected
-- for good, or the retry schedule ran out).
ALTER TABLE email_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE email_outbox ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE email_outbox ADD COLUMN lease_id TEXT;
ALTER TABLE email_outbox ADD COLUMN locked_until INTEGER;
ALTER TABLE email_outbox ADD COLUMN last_attempt_at INTEGER;
ALTER TABLE email_outbox ADD COLUMN last_error TEXT;
ALTER TABLE email_outbox ADD COLUMN failed_at INTEGER;
-- What the provider calls the message (SendGrid's `X-Message-Id`), to trace it there.
ALTER TABLE email_outbox ADD COLUMN provider_message_id TEXT;
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX email_outbox_lease ON email_outbox (lease_id) WHERE lease_id IS NOT NULL;
