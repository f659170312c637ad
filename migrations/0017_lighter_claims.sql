-- A cheaper claim. How many jobs each tenant and each worker has running, kept as the jobs
-- change (`claim_statement` in shared/src/jobs/queue.rs reads them). The claim used to count the
-- running jobs of the candidate's tenant and of the worker on every call: its cost grew with
-- the jobs running, and the claims/s with it fell (1,151 claims/s with 20,000 running on
-- one worker, against 6,400 with 2,000). A counter costs one row read.
--
-- The counts live in narrow tables of their own rather than on `tenants` and `workers`:
-- SQLite rewrites a whole row to change one column, and a tenant's row carries its brand
-- (a logo of up to 64 KB), read by every forward-auth. They are derived data (no foreign
-- keys: deleting a tenant or a worker does not wait on them).
CREATE TABLE tenant_running_jobs (
    tenant_id TEXT PRIMARY KEY,
    running   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE worker_running_jobs (
    worker_id TEXT PRIMARY KEY,
    running   INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO tenant_running_jobs (tenant_id, running)
    SELECT tenant_id, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY tenant_id;
INSERT INTO worker_running_jobs (worker_id, running)
    SELECT worker_id, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY worker_id;

-- A job starts running (a claim) or stops (finished, failed, cancelled, re-queued by the
-- reaper). Jobs are inserted queued, never move between tenants or workers, and are not
-- deleted while running: these two changes are all that moves the counts.
CREATE TRIGGER jobs_running_start
AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status <> 'running'
BEGIN
    INSERT INTO tenant_running_jobs (tenant_id, running) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET running = running + 1;
    INSERT INTO worker_running_jobs (worker_id, running) VALUES (NEW.worker_id, 1)
        ON CONFLICT (worker_id) DO UPDATE SET running = running + 1;
END;

CREATE TRIGGER jobs_running_stop
AFTER UPDATE OF status ON jobs
WHEN OLD.status = 'running' AND NEW.status <> 'running'
BEGIN
    UPDATE tenant_running_jobs SET running = running - 1 WHERE tenant_id = OLD.tenant_id;
    UPDATE worker_running_jobs SET running = running - 1 WHERE worker_id = OLD.worker_id;
END;

-- Every index a claim changes is pages written to the log at its commit, and the writer is
-- the one thing claims share. A claim took a job out of five indexes and put it into four;
-- it now changes three pages of them:
-- - `jobs_tenant_status` served only the count the counters above replace.
-- - `jobs_queue` (worker, status, due time) is read by nothing since the claim reads
--   `jobs_claim`, which also answers the queue depth per worker (`GET /metrics`).
-- - `jobs_lease` is read for running jobs only (the reaper, the running gauge): it holds
--   them only, so queueing and claiming no longer move a job within it.
-- - `jobs_ended` finds failed and cancelled jobs whose hold the reaper still has to
--   release, which `jobs_lease` (status first) used to.
DROP INDEX jobs_tenant_status;
DROP INDEX jobs_queue;
DROP INDEX jobs_lease;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_ended ON jobs (status) WHERE status IN ('failed', 'cancelled');
