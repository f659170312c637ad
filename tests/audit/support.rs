//! What the audit tests share: requests from a chosen client address and user agent, the
//! log as its readers see it, and the two things a test does behind the server's back —
//! tampering with the database file (the point of a tamper-evident log) and appending an
//! entry whose request died before sealing it.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tollgate::{
    audit::{self, Action, Actor, Target},
    clock::Clock,
    db::Db,
};
use tollgate_tests::{TestApp, TestUser, expect_status};

/// A client: its address (sent as `X-Forwarded-For`, which the test server trusts) and its
/// user agent.
pub struct Origin {
    pub ip: String,
    pub agent: String,
}

/// The `n`th distinct client.
pub fn origin(n: u8) -> Origin {
    Origin {
        ip: format!("203.0.113.{n}"),
        agent: format!("audit-test/{n}"),
    }
}

/// Sends a request from `origin`, with a bearer token (session or API key) when given.
pub async fn send(
    app: &TestApp,
    origin: &Origin,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app
        .request(method, path)
        .header("X-Forwarded-For", &origin.ip)
        .header("User-Agent", &origin.agent);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The tenant's entries matching `query` (e.g. `action=user.created`), newest first, as
/// its owner lists them (one page of up to 100).
pub async fn entries(app: &TestApp, owner: &TestUser, query: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("audit-logs?limit=100&{query}"),
            &owner.access_token,
        )
        .await;
    let page = expect_status(response, StatusCode::OK).await;
    page["data"].as_array().unwrap().clone()
}

/// The same through the platform admin API, for tenants whose owner cannot sign in.
pub async fn admin_entries(app: &TestApp, admin: &str, tenant_id: &str, query: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("admin/tenants/{tenant_id}/audit-logs?limit=100&{query}"),
            admin,
        )
        .await;
    let page = expect_status(response, StatusCode::OK).await;
    page["data"].as_array().unwrap().clone()
}

/// The one entry of `action`; fails unless there is exactly one.
pub async fn only_entry(app: &TestApp, owner: &TestUser, action: &str) -> Value {
    let found = entries(app, owner, &format!("action={action}")).await;
    assert_eq!(found.len(), 1, "entries of {action}: {found:#?}");
    found.into_iter().next().unwrap()
}

/// Asserts who acted and from where.
pub fn assert_actor(entry: &Value, kind: &str, id: &str, origin: &Origin) {
    assert_eq!(entry["actor"]["type"], kind, "{entry:#}");
    assert_eq!(entry["actor"]["id"], id, "{entry:#}");
    assert_eq!(entry["ip"], origin.ip.as_str(), "{entry:#}");
    assert_eq!(entry["user_agent"], origin.agent.as_str(), "{entry:#}");
}

pub fn assert_target(entry: &Value, kind: &str, id: &str) {
    assert_eq!(
        entry["target"],
        json!({ "type": kind, "id": id }),
        "{entry:#}"
    );
}

/// `GET audit-logs/verify` as `token`.
pub async fn verify(app: &TestApp, token: &str) -> Value {
    expect_status(app.get("audit-logs/verify", token).await, StatusCode::OK).await
}

/// How many entries the tenant's log holds, read from the database.
pub async fn stored(app: &TestApp, tenant_id: &str) -> i64 {
    app.query(
        "SELECT COUNT(*) FROM audit_log WHERE tenant_id = ?",
        vec![tenant_id.into()],
    )
    .await[0][0]
        .as_i64()
        .unwrap()
}

/// Runs SQL against the database file directly, as someone with access to it would.
pub async fn tamper(app: &TestApp, sql: &str) -> Result<u64, String> {
    let db = libsql::Builder::new_local(&app.db_path)
        .build()
        .await
        .unwrap();
    let connection = db.connect().unwrap();
    connection
        .execute_batch("PRAGMA busy_timeout = 5000")
        .await
        .unwrap();
    connection
        .execute(sql, ())
        .await
        .map_err(|error| error.to_string())
}

/// Appends an entry without sealing it, as a request that died right after its batch
/// committed leaves it; only cron seals it then.
pub async fn append_unsealed(app: &TestApp, tenant_id: &str) {
    let db = tollgate_server::server::open_database(app.db_path.to_str().unwrap(), 0)
        .await
        .unwrap();
    db.execute(audit::entry(
        tenant_id,
        &Actor::system("test"),
        Action::JobCancelled,
        Target::none(),
        json!({}),
        app.clock.now(),
    ))
    .await
    .unwrap();
}

/// Everything the audit tables hold, in a stable order: the state two cron runs must agree on.
pub async fn snapshot(app: &TestApp) -> Vec<Vec<Value>> {
    let mut rows = app
        .query(
            "SELECT tenant_id, seq, id, action, metadata, created_at, prev_hash, hash FROM audit_log ORDER BY tenant_id, seq",
            vec![],
        )
        .await;
    rows.extend(
        app.query(
            "SELECT tenant_id, sealed_seq, sealed_hash, pruned_seq, pruned_hash FROM audit_chains ORDER BY tenant_id",
            vec![],
        )
        .await,
    );
    rows
}
