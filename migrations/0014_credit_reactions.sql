-- What an account's balance sets off (`credits::alerts`): threshold alerts, blocking at
-- 100 % and auto top-up requests, each with its outbox event. Until now every movement ran
-- six statements to look for them, nearly always finding nothing: a third of the writer's
-- time on reserve + settle. As triggers they cost a comparison per changed account, and
-- do their work only when a balance is over its lowest threshold or its top-up point.
--
-- Every UPDATE of `credit_accounts` sets `updated_at` to the moment of the movement; the
-- triggers date what they write with it. Recursive triggers are off (SQLite's default),
-- so the block's own UPDATE sets nothing off again.

-- A threshold crossed: one alert per account, threshold and month (UTC), on any change that
-- leaves the account at or past it (a movement, a smaller total, lower thresholds).
CREATE TRIGGER credit_accounts_alert
AFTER UPDATE ON credit_accounts
WHEN NEW.total > 0
 AND (NEW.used + NEW.reserved) * 100 >= NEW.total * (SELECT MIN(value) FROM json_each(NEW.alert_thresholds))
BEGIN
    INSERT OR IGNORE INTO credit_alerts (id, tenant_id, account_id, threshold, period, created_at)
    SELECT lower(hex(randomblob(16))), NEW.tenant_id, NEW.id, t.value,
           strftime('%Y-%m', NEW.updated_at, 'unixepoch'), NEW.updated_at
    FROM json_each(NEW.alert_thresholds) t
    WHERE (NEW.used + NEW.reserved) * 100 >= t.value * NEW.total;
END;

CREATE TRIGGER credit_alerts_event
AFTER INSERT ON credit_alerts
BEGIN
    INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
    VALUES (lower(hex(randomblob(16))), NEW.tenant_id, 'credits.alert',
            json_object('account_id', NEW.account_id, 'threshold', NEW.threshold, 'period', NEW.period),
            NEW.created_at);
END;

-- Used up: reserves are refused (`credits::reservations`) until credits are added, which
-- unblocks (`credits::alerts::resolve`).
CREATE TRIGGER credit_accounts_block
AFTER UPDATE ON credit_accounts
WHEN NEW.blocked_at IS NULL AND NEW.total > 0 AND NEW.used + NEW.reserved >= NEW.total
BEGIN
    UPDATE credit_accounts SET blocked_at = NEW.updated_at WHERE id = NEW.id;
    INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
    VALUES (lower(hex(randomblob(16))), NEW.tenant_id, 'credits.blocked',
            json_object('account_id', NEW.id, 'total', NEW.total, 'used', NEW.used, 'reserved', NEW.reserved),
            NEW.updated_at);
END;

-- Low with auto top-up on: one pending request at a time, at most the account's monthly
-- maximum, for billing to charge.
CREATE TRIGGER credit_accounts_topup
AFTER UPDATE ON credit_accounts
WHEN NEW.auto_topup_enabled = 1 AND NEW.auto_topup_amount > 0 AND NEW.total IS NOT NULL
 AND NEW.total - NEW.used - NEW.reserved <= NEW.auto_topup_threshold
BEGIN
    INSERT INTO credit_topup_requests (id, tenant_id, account_id, amount, period, batch_id, created_at)
    SELECT lower(hex(randomblob(16))), NEW.tenant_id, NEW.id, NEW.auto_topup_amount,
           strftime('%Y-%m', NEW.updated_at, 'unixepoch'), '', NEW.updated_at
    WHERE NOT EXISTS (SELECT 1 FROM credit_topup_requests r WHERE r.account_id = NEW.id
                      AND r.status IN ('pending', 'charging'))
      AND (SELECT COUNT(*) FROM credit_topup_requests r WHERE r.account_id = NEW.id
           AND r.period = strftime('%Y-%m', NEW.updated_at, 'unixepoch')) < NEW.auto_topup_max_per_month;
END;

CREATE TRIGGER credit_topup_requests_event
AFTER INSERT ON credit_topup_requests
BEGIN
    INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
    VALUES (lower(hex(randomblob(16))), NEW.tenant_id, 'credits.topup_requested',
            json_object('request_id', NEW.id, 'account_id', NEW.account_id, 'amount', NEW.amount),
            NEW.created_at);
END;

-- The batch that made an alert or blocked an account was kept so that batch alone reported
-- it; the triggers report it where they make it. (A top-up request keeps its `batch_id`:
-- billing marks the cron run that charges it there.)
ALTER TABLE credit_alerts DROP COLUMN batch_id;
ALTER TABLE credit_accounts DROP COLUMN blocked_by;
