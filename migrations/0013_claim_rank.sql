-- The claim reads its next job from an index (shared/src/jobs/queue.rs, `claim_statement`):
-- a job's rank is its effective priority in seconds of waiting, less its arrival time, so
-- that one ordering holds at every instant. A job keeps the plan priority its tenant had
-- when it was queued.
ALTER TABLE jobs ADD COLUMN claim_rank INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET claim_rank = (
        COALESCE((SELECT p.priority FROM tenants t, plans p
                  WHERE t.id = jobs.tenant_id AND p.code = t.plan_code
                    AND (p.tenant_id = t.id OR p.tenant_id IS NULL)
                  ORDER BY p.tenant_id IS NULL LIMIT 1), 0)
        + priority) * 60 - created_at
    WHERE status = 'queued';

CREATE INDEX jobs_claim ON jobs (worker_id, claim_rank DESC, created_at) WHERE status = 'queued';

-- A finished job's event and guards find it by the stamp its finish put on it
-- (`jobs.finish_id`, shared/src/jobs/queue.rs): without an index every finish, failure,
-- cancel or reap scanned the whole table, and finishing slowed as jobs accumulated.
CREATE INDEX jobs_finish ON jobs (finish_id) WHERE finish_id IS NOT NULL;
