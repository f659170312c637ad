#![allow(dead_code)]

//! The Tollgate side of the end-to-end tests: a funded tenant on the real server
//! (`tollgate_tests::spawn_app`), its runner tokens, jobs, credits and events, and the
//! runner's job loop over either transport — Tollgate's runner endpoints (HTTP) or the
//! server's database file itself (direct). Every wait is on a condition with a deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpu_runner::comfyui::ComfyClient;
use gpu_runner::direct::{DatabaseUrl, DbQueue, opener};
use gpu_runner::execute;
use gpu_runner::queue::{
    ClaimedJob, Finish, HttpQueue, Lease, LeaseStatus, Queue, QueueError, RunnerInfo,
};
use gpu_runner::store::{LocalDirStore, OutputStore};
use gpu_runner::worker::{Identity, Summary, Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_tests::hrana_server::HranaServer;
use tollgate_tests::{TestApp, TestUser, expect_status};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// How the runner reaches the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Tollgate's runner endpoints with the runner token.
    Http,
    /// The server's libSQL file, through the shared queue functions, with the runner token.
    Direct,
    /// The same database reached over Hrana HTTP (a libSQL server in front of the file),
    /// as a runner whose database is Turso or sqld.
    DirectHrana,
}

/// The `gpu-runner run` flags that select `transport`, and the libSQL server to keep
/// running while the binary uses it.
pub async fn queue_flags(
    app: &TestApp,
    transport: Transport,
) -> (Vec<String>, Option<HranaServer>) {
    match transport {
        Transport::Http => (vec!["--server".into(), app.base_url.clone()], None),
        Transport::Direct => (
            vec!["--database".into(), app.db_path.to_str().unwrap().into()],
            None,
        ),
        Transport::DirectHrana => {
            let server = HranaServer::start(&app.db_path, "runner-db-token").await;
            let flags = vec![
                "--database".into(),
                server.url.clone(),
                "--database-token".into(),
                server.token.clone(),
            ];
            (flags, Some(server))
        }
    }
}

/// Runs the scenario `$name(transport)` once per transport, as `$name::http`,
/// `$name::direct` and `$name::direct_hrana`.
#[allow(unused_macros)]
macro_rules! over_every_transport {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn http() {
                super::$name(crate::support::tollgate::Transport::Http).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn direct() {
                super::$name(crate::support::tollgate::Transport::Direct).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn direct_hrana() {
                super::$name(crate::support::tollgate::Transport::DirectHrana).await
            }
        }
    )*};
}

/// The queue of the runner of `token`, over `transport`.
pub async fn queue(app: &TestApp, transport: Transport, token: &str) -> Arc<dyn Queue> {
    let direct = |url: DatabaseUrl, auth: Option<String>| async move {
        // The server's clock, so that leases and backoffs move as the test moves it.
        DbQueue::start(opener(&url, auth).unwrap(), app.clock.clone(), token)
            .await
            .expect("the direct queue connects")
    };
    match transport {
        Transport::Http => Arc::new(HttpQueue::new(&app.base_url, token).unwrap()),
        Transport::Direct => {
            let url = DatabaseUrl::File(app.db_path.to_str().unwrap().to_string());
            Arc::new(direct(url, None).await)
        }
        Transport::DirectHrana => {
            let server = HranaServer::start(&app.db_path, "runner-db-token").await;
            let url = DatabaseUrl::parse(&server.url).unwrap();
            assert!(matches!(url, DatabaseUrl::Remote(_)));
            let queue = direct(url, Some(server.token.clone())).await;
            Arc::new(OverHrana {
                queue,
                _server: server,
            })
        }
    }
}

/// A direct queue and the libSQL server it talks to, which lives as long as the queue.
struct OverHrana {
    queue: DbQueue,
    _server: HranaServer,
}

#[async_trait::async_trait]
impl Queue for OverHrana {
    async fn heartbeat(&self, info: &RunnerInfo) -> Result<(), QueueError> {
        self.queue.heartbeat(info).await
    }

    async fn claim(
        &self,
        free_vram_mb: i64,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, QueueError> {
        self.queue.claim(free_vram_mb, wait).await
    }

    async fn renew(&self, lease: &Lease) -> Result<LeaseStatus, QueueError> {
        self.queue.renew(lease).await
    }

    async fn progress(
        &self,
        lease: &Lease,
        percent: i64,
        node: Option<&str>,
    ) -> Result<LeaseStatus, QueueError> {
        self.queue.progress(lease, percent, node).await
    }

    async fn finish(&self, lease: &Lease, finish: &Finish) -> Result<(), QueueError> {
        self.queue.finish(lease, finish).await
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<(), QueueError> {
        self.queue.fail(lease, error).await
    }
}

/// A tenant whose pool holds 100 credits, with limits that let the recorded workflows in.
pub async fn funded_tenant(app: &TestApp, slug: &str) -> TestUser {
    funded_tenant_with(app, slug, json!({})).await
}

/// [`funded_tenant`] with more plan overrides.
pub async fn funded_tenant_with(app: &TestApp, slug: &str, overrides: Value) -> TestUser {
    funded_tenant_with_credits(app, slug, overrides, 100).await
}

/// [`funded_tenant_with`] whose pool holds `credits`.
pub async fn funded_tenant_with_credits(
    app: &TestApp,
    slug: &str,
    overrides: Value,
    credits: i64,
) -> TestUser {
    let owner = app.register(slug).await;
    let admin = app
        .platform_admin(&format!("ops@{slug}.platform.test"))
        .await;
    let mut all = json!({
        "requests_per_minute": 1_000_000,
        "max_width": null, "max_height": null, "max_pixels": null,
        "max_batch_size": null, "max_vram_mb": null,
    });
    for (k, v) in overrides.as_object().unwrap() {
        all[k] = v.clone();
    }
    app.assign_plan(&admin, &owner, &json!({ "plan": "FREE", "overrides": all }))
        .await;
    app.grant_pool_credits(&admin, &owner, credits).await;
    owner
}

/// A runner token on the tenant's default worker.
pub struct RunnerToken {
    pub worker_id: String,
    pub token_id: String,
    pub token: String,
}

pub async fn runner_token(app: &TestApp, owner: &TestUser) -> RunnerToken {
    let workers = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let worker = workers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["default"] == true)
        .expect("a default worker")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post(
            &format!("workers/{worker}/runner-tokens"),
            &owner.access_token,
            &json!({ "name": "gpu-host-1" }),
        )
        .await;
    let created = expect_status(response, StatusCode::CREATED).await;
    RunnerToken {
        worker_id: worker,
        token_id: created["id"].as_str().unwrap().to_owned(),
        token: created["token"].as_str().unwrap().to_owned(),
    }
}

pub async fn submit(app: &TestApp, owner: &TestUser, workflow: &Value) -> String {
    let response = app
        .post(
            "jobs",
            &owner.access_token,
            &json!({ "workflow": workflow }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn job(app: &TestApp, owner: &TestUser, id: &str) -> Value {
    expect_status(
        app.get(&format!("jobs/{id}"), &owner.access_token).await,
        StatusCode::OK,
    )
    .await
}

pub fn ended(job: &Value) -> bool {
    !["queued", "running"].contains(&job["status"].as_str().unwrap())
}

/// Polls the job until `done` holds, or panics at the deadline.
pub async fn wait_for_job(
    app: &TestApp,
    owner: &TestUser,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let j = job(app, owner, id).await;
        if done(&j) {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; job: {j}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `query` (one row, one integer) until it equals `want`, or panics at the deadline.
pub async fn wait_for_count(app: &TestApp, what: &str, query: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = app.query(query, vec![]).await[0][0].as_i64().unwrap();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (total, used, reserved) of the tenant's pool.
pub async fn pool(app: &TestApp, owner: &TestUser) -> (i64, i64, i64) {
    let rows = app
        .query(
            "SELECT total, used, reserved FROM credit_accounts WHERE tenant_id = ? AND user_id IS NULL",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    let r = &rows[0];
    (
        r[0].as_i64().unwrap(),
        r[1].as_i64().unwrap(),
        r[2].as_i64().unwrap(),
    )
}

/// The ledger rows of `kind` for the job's reservation, as `(account_id, used_delta,
/// reserved_delta)`: a step writes one row per account it moves (the pool, the user's).
pub async fn ledger(app: &TestApp, job_id: &str, kind: &str) -> Vec<(String, i64, i64)> {
    app.query(
        "SELECT l.account_id, l.used_delta, l.reserved_delta FROM credit_ledger l
         JOIN jobs j ON j.reservation_id = l.reservation_id
         WHERE j.id = ? AND l.kind = ? ORDER BY l.created_at, l.rowid",
        vec![job_id.into(), kind.into()],
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].as_str().unwrap().to_owned(),
            r[1].as_i64().unwrap(),
            r[2].as_i64().unwrap(),
        )
    })
    .collect()
}

/// Asserts that the job's reservation was settled once, for `charged`: one settle row per
/// account, each charging that much, and no release.
pub async fn assert_settled_once(app: &TestApp, job_id: &str, charged: i64) {
    let settles = ledger(app, job_id, "settle").await;
    let accounts: std::collections::HashSet<&String> = settles.iter().map(|r| &r.0).collect();
    assert!(!settles.is_empty(), "{job_id}: not settled");
    assert_eq!(accounts.len(), settles.len(), "{job_id}: {settles:?}");
    assert!(
        settles.iter().all(|r| r.1 == charged),
        "{job_id}: {settles:?}, want {charged}"
    );
    assert!(ledger(app, job_id, "release").await.is_empty(), "{job_id}");
}

pub async fn events(app: &TestApp, owner: &TestUser, event_type: &str) -> Vec<Value> {
    app.query(
        "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = ? ORDER BY created_at",
        vec![owner.tenant_id.clone().into(), event_type.into()],
    )
    .await
    .into_iter()
    .map(|row| serde_json::from_str(row[0].as_str().unwrap()).unwrap())
    .collect()
}

/// What a job is charged for its GPU seconds (the queue's `actual_cost`).
pub fn charge(gpu_seconds: i64) -> i64 {
    1 + (gpu_seconds + 9) / 10
}

/// Test timings: fast polls and renewals.
pub fn options(shutdown_grace: Duration) -> WorkerOptions {
    WorkerOptions {
        heartbeat_interval: Duration::from_millis(100),
        renew_interval: Duration::from_millis(100),
        progress_interval: Duration::from_millis(20),
        claim_wait: Duration::from_secs(1),
        idle_poll_min: Duration::from_millis(10),
        idle_poll_max: Duration::from_millis(100),
        shutdown_grace,
        report_attempts: 3,
        min_free_vram_mb: 1,
        execute: execute::Options {
            poll_interval: Duration::from_millis(50),
            poll_interval_no_ws: Duration::from_millis(5),
            interrupt_grace: Duration::from_secs(10),
            max_poll_failures: 5,
            use_websocket: true,
        },
    }
}

/// The runner's job loop, in-process, until stopped.
pub struct RunningWorker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Summary>,
    pub dir: PathBuf,
}

impl RunningWorker {
    pub async fn start(
        app: &TestApp,
        transport: Transport,
        token: &str,
        comfyui: &str,
    ) -> RunningWorker {
        Self::with_grace(app, transport, token, comfyui, Duration::from_secs(10)).await
    }

    pub async fn with_grace(
        app: &TestApp,
        transport: Transport,
        token: &str,
        comfyui: &str,
        shutdown_grace: Duration,
    ) -> RunningWorker {
        let dir =
            std::env::temp_dir().join(format!("gpu-runner-e2e-{}", uuid::Uuid::new_v4().simple()));
        let store = Arc::new(LocalDirStore::new(&dir));
        let mut running = Self::with_store(
            queue(app, transport, token).await,
            comfyui,
            store,
            options(shutdown_grace),
        );
        running.dir = dir;
        running
    }

    /// The loop over `queue`, storing outputs in `store`.
    pub fn with_store(
        queue: Arc<dyn Queue>,
        comfyui: &str,
        store: Arc<dyn OutputStore>,
        options: WorkerOptions,
    ) -> RunningWorker {
        let worker = Worker {
            queue,
            comfyui: vec![ComfyClient::new(comfyui)],
            store,
            identity: Identity {
                host: "gpu-host-1".into(),
                version: "0.1.0-test".into(),
            },
            options,
        };
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(async move { worker.run(stop_rx).await });
        RunningWorker {
            stop,
            handle,
            dir: PathBuf::new(),
        }
    }

    /// Stops the loop (as SIGTERM does) and waits for it; its summary.
    pub async fn stop(self) -> Summary {
        self.stop.send_replace(true);
        let summary = tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the worker stops")
            .expect("the worker does not panic");
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        summary
    }

    /// Kills the loop where it stands, as a crash would: nothing more is reported.
    pub async fn kill(self) {
        self.handle.abort();
        let ended = tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the aborted worker ends");
        assert!(
            ended.is_err_and(|e| e.is_cancelled()),
            "the worker was still running"
        );
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
