//! The money path finds every row it touches through an index, so its cost does not grow
//! with the tables it reads (accounts, alerts, top-up requests, the outbox), however many
//! tenants and months they come to hold. Each statement a reserve, a settle, a release or a
//! grant runs is planned by SQLite (`EXPLAIN QUERY PLAN`) on the migrated schema, and no
//! plan may scan a whole table.

use std::cell::RefCell;

use async_trait::async_trait;
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

#[tokio::test(flavor = "current_thread")]
async fn a_reserve_a_settle_a_release_and_a_grant_read_no_table_whole() {
    let dir = tempfile::tempdir().unwrap();
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
