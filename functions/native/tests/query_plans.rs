//! The hot paths find every row they touch through an index, so their cost does not grow
//! with the tables they read (accounts, alerts, top-up requests, jobs, the outbox), however
//! many tenants and months they come to hold. Each statement of the money path (a reserve,
//! a settle, a release, a grant) and of a job's life through the API (sign-in aside: submit,
//! claim, progress, finish, fail, cancel, and the reaper) is planned by SQLite
//! (`EXPLAIN QUERY PLAN`) on the migrated schema, and no plan may scan a whole table.

use std::cell::RefCell;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value as Json, json};
use tollgate::{
    Env,
    auth::password::Password,
    clock::SystemClock,
    config::Config,
    credits::{
        grants::{self, Grant},
        reservations::{self, Hold},
    },
    db::{Db, DbError, Rows, Statement},
    ids::new_id,
    outbound::NoOutbound,
    tenancy::{Email, Slug, tenants},
};
use tollgate_server::{db::LibsqlDb, server};

/// A statement's SQL and the steps of its plan.
type Plan = (String, Vec<String>);

/// The database, planning each statement before it runs it; the plans of the statements
/// run since the last [`Planning::take`].
#[derive(Clone)]
struct Planning {
    inner: LibsqlDb,
    plans: std::rc::Rc<RefCell<Vec<Plan>>>,
}

impl Planning {
    async fn plan(&self, statement: &Statement) {
        let explain = Statement {
            sql: format!("EXPLAIN QUERY PLAN {}", statement.sql),
            params: statement.params.clone(),
        };
        let rows = self.inner.execute(explain).await.unwrap();
        let details = rows
            .iter()
            .map(|row| row.get::<String>("detail").unwrap())
            .collect();
        self.plans
            .borrow_mut()
            .push((statement.sql.clone(), details));
    }

    fn take(&self) -> Vec<Plan> {
        std::mem::take(&mut self.plans.borrow_mut())
    }
}

#[async_trait(?Send)]
impl Db for Planning {
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError> {
        self.plan(&statement).await;
        self.inner.execute(statement).await
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError> {
        for statement in &statements {
            self.plan(statement).await;
        }
        self.inner.batch(statements).await
    }
}

/// The steps of a plan that read a whole table (or a whole index). Scanning a table-valued
/// function (`json_each` of a row's list), a constant row, or the rows a subquery of the
/// same statement made (`MATERIALIZE h`, `CO-ROUTINE h`, then `SCAN h`) is not one.
fn full_scans(details: &[String]) -> Vec<&String> {
    let made: Vec<&str> = details
        .iter()
        .filter_map(|detail| {
            detail
                .strip_prefix("MATERIALIZE ")
                .or_else(|| detail.strip_prefix("CO-ROUTINE "))
        })
        .collect();
    details
        .iter()
        .filter(|detail| {
            detail.strip_prefix("SCAN ").is_some_and(|scanned| {
                !scanned.contains("VIRTUAL TABLE")
                    && !scanned.contains("CONSTANT ROW")
                    && !made.contains(&scanned)
            })
        })
        .collect()
}

fn assert_no_full_scan(step: &str, plans: &[Plan]) {
    assert!(!plans.is_empty(), "{step}: no statement was planned");
    for (sql, details) in plans {
        let scans = full_scans(details);
        assert!(
            scans.is_empty(),
            "{step}: {scans:?} in the plan of\n{sql}\n(plan: {details:?})"
        );
    }
}

/// A migrated database that plans what it runs, and an `Env` over it.
async fn planned_env(dir: &tempfile::TempDir) -> (Planning, Env) {
    let path = dir.path().join("plans.db");
    let inner = server::open_database(path.to_str().unwrap(), 0)
        .await
        .unwrap();
    let planning = Planning {
        inner,
        plans: Default::default(),
    };
    let config = Config::from_lookup(|name| {
        (name == "TOLLGATE_JWT_SECRET").then(|| "plans-secret-plans-secret-plans-secret-01".into())
    })
    .unwrap();
    let env = Env::new(
        Box::new(planning.clone()),
        Box::new(SystemClock),
        Box::new(NoOutbound),
        config,
    );
    (planning, env)
}

#[tokio::test(flavor = "current_thread")]
async fn a_reserve_a_settle_a_release_and_a_grant_read_no_table_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (planning, env) = planned_env(&dir).await;
    let created = tenants::create(
        &env,
        &tenants::NewTenant {
            slug: Slug::parse("slug", "acme").unwrap(),
            name: "Acme".into(),
            plan: "FREE",
            owner_email: Email::parse("email", "owner@acme.test").unwrap(),
            owner_name: "Owner".into(),
            owner_password: Password::parse("password", "correct horse battery staple".into())
                .unwrap(),
        },
    )
    .await
    .unwrap();
    let (tenant, owner) = (created.tenant_id.as_str(), created.owner_id.as_str());
    planning.take();

    let grant = Grant {
        amount: 1_000,
        reason: Some("plans".into()),
        idempotency_key: None,
    };
    grants::add_to_pool(&env, "plans", tenant, grant)
        .await
        .unwrap();
    assert_no_full_scan("grant", &planning.take());

    let hold = Hold {
        amount: 900,
        reason: Some("render".into()),
        model: None,
        job_id: None,
    };
    // Past every alert threshold, so the alert, block and event statements all write.
    let (_, held) = reservations::reserve(&env, tenant, owner, &hold, new_id())
        .await
        .unwrap();
    assert_no_full_scan("reserve", &planning.take());
    reservations::settle(&env, tenant, held["id"].as_str().unwrap(), 850)
        .await
        .unwrap();
    assert_no_full_scan("settle", &planning.take());

    let small = Hold { amount: 10, ..hold };
    let (_, held) = reservations::reserve(&env, tenant, owner, &small, new_id())
        .await
        .unwrap();
    planning.take();
    reservations::release(&env, tenant, held["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_no_full_scan("release", &planning.take());
}

#[tokio::test(flavor = "current_thread")]
async fn a_claim_reads_its_candidates_from_the_index_best_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let planning = Planning {
        inner: server::open_database(path.to_str().unwrap(), 0)
            .await
            .unwrap(),
        plans: Default::default(),
    };
    let claim = tollgate::jobs::queue::claim_statement("worker", "token", 24_576, "lease", 1_000);
    planning.plan(&claim).await;
    let plans = planning.take();
    assert_no_full_scan("claim", &plans);
    let details = &plans[0].1;
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("USING INDEX jobs_claim")),
        "{details:?}"
    );
    assert!(
        !details.iter().any(|detail| detail.contains("TEMP B-TREE")),
        "the candidates are sorted, not read in order: {details:?}"
    );
}

/// `method path` through the whole API, with `bearer` and a JSON `body`; the status and
/// the answer's JSON.
async fn call(
    env: &Env,
    method: &str,
    path: &str,
    bearer: &str,
    body: Json,
) -> (http::StatusCode, Json) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://plans.test/api/v1/{path}"))
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let response = tollgate::handle(request, env).await;
    let status = response.status();
    let json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
    (status, json)
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_s_life_reads_no_table_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (planning, env) = planned_env(&dir).await;
    let password = "correct horse battery staple";
    let created = tenants::create(
        &env,
        &tenants::NewTenant {
            slug: Slug::parse("slug", "acme").unwrap(),
            name: "Acme".into(),
            plan: "PRO",
            owner_email: Email::parse("email", "owner@acme.test").unwrap(),
            owner_name: "Owner".into(),
            owner_password: Password::parse("password", password.into()).unwrap(),
        },
    )
    .await
    .unwrap();
    let grant = Grant {
        amount: 1_000_000,
        reason: Some("plans".into()),
        idempotency_key: None,
    };
    grants::add_to_pool(&env, "plans", &created.tenant_id, grant)
        .await
        .unwrap();
    let (status, login) = call(
        &env,
        "POST",
        "auth/login",
        "",
        json!({ "tenant": "acme", "email": "owner@acme.test", "password": password }),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let owner = login["access_token"].as_str().unwrap().to_owned();
    let (_, workers) = call(&env, "GET", "workers", &owner, Json::Null).await;
    let worker = workers["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, token) = call(
        &env,
        "POST",
        &format!("workers/{worker}/runner-tokens"),
        &owner,
        json!({ "name": "gpu-1" }),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let runner = token["token"].as_str().unwrap().to_owned();
    let heartbeat =
        json!({ "host": "gpu-1", "gpu": "RTX 4090", "vram_mb": 24576, "version": "0.1.0" });
    call(&env, "POST", "runner/heartbeat", &runner, heartbeat).await;
    let workflow = json!({ "workflow": {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
                                                     "latent_image": ["5", 0], "steps": 20, "seed": 1, "cfg": 7,
                                                     "sampler_name": "euler", "scheduler": "normal", "denoise": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "out"}},
    }});
    planning.take();

    // Each step, then the plans of every statement it ran.
    let step =
        async |name: &str, method: &str, path: &str, bearer: &str, body: Json, expected: u16| {
            let (status, answer) = call(&env, method, path, bearer, body).await;
            assert_eq!(status, expected, "{name}: {answer}");
            assert_no_full_scan(name, &planning.take());
            answer
        };
    let run = async |job_number: usize| {
        let job = step("submit", "POST", "jobs", &owner, workflow.clone(), 201).await;
        let claimed = step(
            "claim",
            "POST",
            "runner/claim",
            &runner,
            json!({ "free_vram_mb": 24576 }),
            200,
        )
        .await;
        assert_eq!(claimed["job_id"], job["id"], "job {job_number}");
        claimed
    };
    let claimed = run(1).await;
    let id = claimed["job_id"].as_str().unwrap();
    let lease = &claimed["lease_id"];
    step(
        "progress",
        "POST",
        &format!("runner/jobs/{id}/progress"),
        &runner,
        json!({ "lease_id": lease, "progress": 50, "current_node": "3" }),
        200,
    )
    .await;
    step(
        "finish",
        "POST",
        &format!("runner/jobs/{id}/finish"),
        &runner,
        json!({ "lease_id": lease, "status": "succeeded", "gpu_seconds": 12,
                 "outputs": [{"filename": "out_00001_.png", "type": "output"}] }),
        200,
    )
    .await;

    let claimed = run(2).await;
    let id = claimed["job_id"].as_str().unwrap();
    step(
        "fail",
        "POST",
        &format!("runner/jobs/{id}/fail"),
        &runner,
        json!({ "lease_id": claimed["lease_id"], "error": "out of memory" }),
        200,
    )
    .await;

    let job = step("submit", "POST", "jobs", &owner, workflow.clone(), 201).await;
    let id = job["id"].as_str().unwrap();
    step(
        "cancel",
        "POST",
        &format!("jobs/{id}/cancel"),
        &owner,
        Json::Null,
        200,
    )
    .await;

    tollgate::jobs::queue::reap(&env).await.unwrap();
    assert_no_full_scan("reap", &planning.take());
}
