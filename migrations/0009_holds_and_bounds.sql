-- Who moves a hold. A reservation made through `POST credits/reservations` belongs to its
-- caller, who settles or releases it; a job's hold (and later an LLM call's) moves only
-- with that work's lifecycle, so the generic endpoints refuse it. The values are
-- `credits::reservations::Owner`'s (no CHECK, so a new kind of work needs no table rebuild).
ALTER TABLE credit_reservations ADD COLUMN owner TEXT NOT NULL DEFAULT 'caller';
UPDATE credit_reservations SET owner = 'job'
WHERE id IN (SELECT reservation_id FROM jobs);

-- Balances stay whole numbers well inside 64 bits. SQLite turns an integer sum that
-- overflows into a REAL without a word; these refuse any account figure that is not an
-- integer or lies past 10^15 credits (every single amount the API accepts is at most
-- 10^12, so no sum of a figure and an amount can overflow before this check sees it).
-- The message's `out_of_range` prefix is what the API answers 422 on.
CREATE TRIGGER credit_accounts_in_range_on_insert
BEFORE INSERT ON credit_accounts
WHEN (NEW.total IS NOT NULL AND (typeof(NEW.total) <> 'integer' OR NEW.total NOT BETWEEN -1000000000000000 AND 1000000000000000))
  OR typeof(NEW.used) <> 'integer' OR NEW.used NOT BETWEEN -1000000000000000 AND 1000000000000000
  OR typeof(NEW.reserved) <> 'integer' OR NEW.reserved NOT BETWEEN -1000000000000000 AND 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'out_of_range: a credit balance must be a whole number of at most 10^15 credits');
END;

CREATE TRIGGER credit_accounts_in_range_on_update
BEFORE UPDATE OF total, used, reserved ON credit_accounts
WHEN (NEW.total IS NOT NULL AND (typeof(NEW.total) <> 'integer' OR NEW.total NOT BETWEEN -1000000000000000 AND 1000000000000000))
  OR typeof(NEW.used) <> 'integer' OR NEW.used NOT BETWEEN -1000000000000000 AND 1000000000000000
  OR typeof(NEW.reserved) <> 'integer' OR NEW.reserved NOT BETWEEN -1000000000000000 AND 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'out_of_range: a credit balance must be a whole number of at most 10^15 credits');
END;
