//! The black-box suite every runtime must pass, given only a base URL, the database file
//! behind its libSQL HTTP endpoint (for what no API may do: create a platform admin, age a
//! lease) and how its cron is triggered.

use std::{path::PathBuf, time::Duration};

use futures::future::join_all;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tollgate::sql;
use tollgate_tests::{
    PASSWORD, create_platform_admin, file_env,
    oidc_provider::{CLIENT_ID, CLIENT_SECRET, Provider},
    openai_double::{OpenAiDouble, PIECES_BEFORE_HOLD, STREAMED_PIECES},
    sdxl,
};

/// How a runtime's scheduled work is set off.
pub enum Cron {
    /// `POST /api/v1/cron/run` with the secret (native, Spin / WASI HTTP).
    Endpoint { secret: String },
    /// wrangler's `--test-scheduled` route, which fires the worker's `scheduled` handler.
    WorkerScheduled,
}

pub struct Target {
    pub name: &'static str,
    pub base_url: String,
    pub database: PathBuf,
    pub cron: Cron,
    client: reqwest::Client,
}

impl Target {
    pub fn new(name: &'static str, base_url: String, database: PathBuf, cron: Cron) -> Self {
        Self {
            name,
            base_url,
            database,
            cron,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1/{path}", self.base_url))
    }

    async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn post_public(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn run_cron(&self) {
        let response = match &self.cron {
            Cron::Endpoint { secret } => {
                let wrong = self.post("cron/run", "not-the-secret", json!({})).await;
                expect(self, wrong, StatusCode::UNAUTHORIZED).await;
                self.post("cron/run", secret, json!({})).await
            }
            Cron::WorkerScheduled => self
                .client
                .get(format!("{}/__scheduled?cron=*+*+*+*+*", self.base_url))
                .send()
                .await
                .unwrap(),
        };
        assert!(
            response.status().is_success(),
            "{}: cron answered {}: {}",
            self.name,
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
}

/// The status, and the body as JSON; panics (naming the runtime) on another status or a
/// body that is not JSON.
async fn expect(target: &Target, response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{}: body {text}", target.name);
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{}: a body that is not JSON: {text}", target.name))
}

struct Owner {
    tenant_id: String,
    slug: String,
    email: String,
    access_token: String,
    refresh_token: String,
}

/// Runs every check against `target`, in order.
pub async fn run(target: &Target) {
    health(target).await;
    bad_input_gets_json_errors(target).await;
    let acme = register_and_log_in(target, "acme").await;
    refresh_rotates_the_pair(target, &acme).await;
    api_keys_pass_forward_auth_within_their_scopes(target, &acme).await;
    the_console_signs_a_browser_in_and_out(target, &acme).await;
    single_sign_on_signs_a_browser_in(target, &acme).await;
    let globex = register_and_log_in(target, "globex").await;
    tenants_cannot_see_each_other(target, &acme, &globex).await;
    credits_reserve_for_jobs_and_cancel_releases(target, &acme).await;
    cron_requeues_a_job_whose_lease_expired(target, &acme).await;
    concurrent_requests_are_each_answered_for_what_they_are(target).await;
    llm_calls_are_charged_streamed_and_refused(target).await;
}

async fn health(target: &Target) {
    let response = target
        .client
        .get(format!("{}/api/v1/health", target.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect(target, response, StatusCode::OK).await["status"],
        "ok"
    );
}

async fn bad_input_gets_json_errors(target: &Target) {
    let response = target
        .request(Method::POST, "auth/register")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body = expect(target, response, StatusCode::BAD_REQUEST).await;
    assert!(body["error"]["code"].is_string(), "{}: {body}", target.name);

    let response = target
        .request(Method::GET, "no/such/route")
        .send()
        .await
        .unwrap();
    expect(target, response, StatusCode::NOT_FOUND).await;

    let response = target
        .request(Method::DELETE, "auth/login")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("allow").map(|v| v.to_str().unwrap()),
        Some("POST"),
        "{}",
        target.name
    );
    expect(target, response, StatusCode::METHOD_NOT_ALLOWED).await;
}

async fn register_and_log_in(target: &Target, slug: &str) -> Owner {
    let email = format!("owner@{slug}.test");
    let response = target
        .post_public(
            "auth/register",
            json!({ "tenant_name": format!("{slug} Inc."), "tenant_slug": slug,
                    "email": email, "password": PASSWORD, "name": "Owner" }),
        )
        .await;
    let registered = expect(target, response, StatusCode::CREATED).await;
    assert_eq!(registered["tenant"]["plan"], "FREE", "{}", target.name);

    let response = target
        .post_public(
            "auth/login",
            json!({ "tenant": slug, "email": email, "password": "wrong password entirely" }),
        )
        .await;
    let body = expect(target, response, StatusCode::UNAUTHORIZED).await;
    assert!(body["error"]["code"].is_string(), "{}: {body}", target.name);

    let response = target
        .post_public(
            "auth/login",
            json!({ "tenant": slug, "email": email, "password": PASSWORD }),
        )
        .await;
    let tokens = expect(target, response, StatusCode::OK).await;
    let owner = Owner {
        tenant_id: registered["tenant"]["id"].as_str().unwrap().to_owned(),
        slug: slug.to_owned(),
        email,
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
    };
    let me = expect(
        target,
        target.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["user"]["email"], owner.email, "{}: {me}", target.name);
    owner
}

/// The console's pages and its script are served, its sign-in sets the session cookie,
/// the cookie passes forward-auth, and sign-out ends the session.
async fn the_console_signs_a_browser_in_and_out(target: &Target, owner: &Owner) {
    let console = |path: &str| format!("{}/console{path}", target.base_url);
    let page = target.client.get(console("/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{}", target.name);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\" action=\"/console/sign-in\">")
    );
    let script = target.client.get(console("/app.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK, "{}", target.name);

    let signed_in = target
        .client
        .post(console("/sign-in"))
        .form(&[
            ("tenant", owner.slug.as_str()),
            ("email", owner.email.as_str()),
            ("password", PASSWORD),
            ("return_to", "/console"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "{}", target.name);
    let cookies: Vec<String> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(cookies.len(), 2, "{}: {cookies:?}", target.name);
    let cookie = cookies.join("; ");
    let csrf = cookies
        .iter()
        .find_map(|pair| pair.strip_prefix("tollgate_csrf="))
        .unwrap()
        .to_owned();

    let verified = target
        .request(Method::GET, "auth/verify")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK, "{}", target.name);
    let home = target
        .client
        .get(console(""))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        home.text().await.unwrap().contains(&csrf),
        "{}",
        target.name
    );

    let signed_out = target
        .client
        .post(console("/sign-out"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_out.status(),
        StatusCode::SEE_OTHER,
        "{}",
        target.name
    );
    let refused = target
        .request(Method::GET, "auth/verify")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        target.name
    );
}

/// The code flow with PKCE against a real OpenID provider on loopback: the runtime keeps
/// nothing between the redirects but the attempt row, and the callback opens a session the
/// API accepts from the cookie.
async fn single_sign_on_signs_a_browser_in(target: &Target, owner: &Owner) {
    let provider = Provider::start("any").await;
    let response = target
        .post(
            "sso/providers",
            &owner.access_token,
            json!({ "name": "Forge ID", "kind": "oidc", "issuer": provider.issuer,
                    "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET }),
        )
        .await;
    expect(target, response, StatusCode::CREATED).await;
    provider.signs_in_as("p-owner", &owner.email).await;
    let location =
        |response: &Response| response.headers()["location"].to_str().unwrap().to_owned();
    let start = target
        .request(Method::GET, &format!("auth/sso/{}/start", owner.slug))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND, "{}", target.name);
    let at_provider = target.client.get(location(&start)).send().await.unwrap();
    let back = location(&at_provider);
    let (_, callback) = back
        .split_once("/api/v1/auth/sso/callback?")
        .unwrap_or_else(|| panic!("{}: the provider sent the browser to {back}", target.name));
    let signed_in = target
        .request(Method::GET, &format!("auth/sso/callback?{callback}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::FOUND, "{}", target.name);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("tollgate_session="))
        .map(|cookie| cookie.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{}: no session cookie", target.name));
    let me = target
        .request(Method::GET, "auth/me")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let me = expect(target, me, StatusCode::OK).await;
    assert_eq!(me["user"]["email"], owner.email, "{}: {me}", target.name);
    let replayed = target
        .request(Method::GET, &format!("auth/sso/callback?{callback}"))
        .send()
        .await
        .unwrap();
    expect(target, replayed, StatusCode::BAD_REQUEST).await;
}

async fn refresh_rotates_the_pair(target: &Target, owner: &Owner) {
    let response = target
        .post_public(
            "auth/refresh",
            json!({ "refresh_token": owner.refresh_token }),
        )
        .await;
    let rotated = expect(target, response, StatusCode::OK).await;
    assert_ne!(rotated["refresh_token"], owner.refresh_token.as_str());
    let me = target
        .get("auth/me", rotated["access_token"].as_str().unwrap())
        .await;
    expect(target, me, StatusCode::OK).await;

    // Within the grace window the rotated token yields the very same pair (two tabs
    // refreshing at once), not a second family.
    let response = target
        .post_public(
            "auth/refresh",
            json!({ "refresh_token": owner.refresh_token }),
        )
        .await;
    let again = expect(target, response, StatusCode::OK).await;
    assert_eq!(
        again["refresh_token"], rotated["refresh_token"],
        "{}",
        target.name
    );

    let response = target
        .post_public("auth/refresh", json!({ "refresh_token": "rt_not-a-token" }))
        .await;
    expect(target, response, StatusCode::UNAUTHORIZED).await;
}

async fn api_keys_pass_forward_auth_within_their_scopes(target: &Target, owner: &Owner) {
    let response = target
        .post(
            "api-keys",
            &owner.access_token,
            json!({ "name": "ci", "scopes": ["users:read"] }),
        )
        .await;
    let key = expect(target, response, StatusCode::CREATED).await;
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("tg_"), "{}: {key}", target.name);

    let verify = |credential: Option<&str>, method: &str, uri: &str| {
        let mut request = target
            .request(Method::GET, "auth/verify")
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Uri", uri);
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        request.send()
    };
    let allowed = verify(Some(secret), "GET", "/api/v1/users").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK, "{}", target.name);
    assert_eq!(
        allowed.headers()["x-tollgate-tenant-id"].to_str().unwrap(),
        owner.tenant_id,
        "{}",
        target.name
    );
    let denied = verify(Some(secret), "POST", "/api/v1/users").await.unwrap();
    expect(target, denied, StatusCode::FORBIDDEN).await;
    let anonymous = verify(None, "GET", "/api/v1/users").await.unwrap();
    assert!(
        anonymous.headers().contains_key("www-authenticate"),
        "{}",
        target.name
    );
    expect(target, anonymous, StatusCode::UNAUTHORIZED).await;
    let by_jwt = verify(Some(&owner.access_token), "POST", "/api/v1/users")
        .await
        .unwrap();
    assert_eq!(by_jwt.status(), StatusCode::OK, "{}", target.name);

    let users = expect(target, target.get("users", secret).await, StatusCode::OK).await;
    assert_eq!(
        users["data"].as_array().unwrap().len(),
        1,
        "{}",
        target.name
    );
    let response = target
        .post(
            "users",
            secret,
            json!({ "email": "x@x.test", "name": "X", "password": PASSWORD, "role": "member" }),
        )
        .await;
    expect(target, response, StatusCode::FORBIDDEN).await;
}

async fn tenants_cannot_see_each_other(target: &Target, acme: &Owner, globex: &Owner) {
    let acme_users = expect(
        target,
        target.get("users", &acme.access_token).await,
        StatusCode::OK,
    )
    .await;
    let acme_owner = acme_users["data"][0]["id"].as_str().unwrap();
    let response = target
        .get(&format!("users/{acme_owner}"), &globex.access_token)
        .await;
    expect(target, response, StatusCode::NOT_FOUND).await;
    let keys = expect(
        target,
        target.get("api-keys", &globex.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(keys["data"], json!([]), "{}: {keys}", target.name);
    let tenant = expect(
        target,
        target.get("tenant", &globex.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["slug"], globex.slug.as_str(), "{}", target.name);
}

/// A platform admin for `owner`'s tenant, made the operator's way (in the database), signed
/// in; its access token.
async fn platform_admin(target: &Target, owner: &Owner) -> String {
    let email = format!("ops@{}.platform.test", owner.slug);
    create_platform_admin(&file_env(&target.database).await, &email).await;
    let response = target
        .post_public(
            "admin/login",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    expect(target, response, StatusCode::OK).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The tenant's pool after a platform admin grants `amount` through the API.
async fn fund(target: &Target, owner: &Owner, amount: i64) {
    let admin_token = platform_admin(target, owner).await;
    grant(target, &admin_token, owner, amount).await;
}

async fn grant(target: &Target, admin_token: &str, owner: &Owner, amount: i64) {
    let response = target
        .post(
            &format!("admin/tenants/{}/credits/grants", owner.tenant_id),
            admin_token,
            json!({ "amount": amount, "reason": "conformance" }),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}: grant answered {}",
        target.name,
        response.status()
    );
}

async fn pool(target: &Target, owner: &Owner) -> Value {
    let credits = expect(
        target,
        target.get("credits", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    credits["pool"].clone()
}

async fn credits_reserve_for_jobs_and_cancel_releases(target: &Target, owner: &Owner) {
    fund(target, owner, 100).await;
    assert_eq!(pool(target, owner).await["total"], 100, "{}", target.name);

    let response = target
        .request(Method::POST, "jobs")
        .bearer_auth(&owner.access_token)
        .header("Idempotency-Key", "conformance-1")
        .json(&json!({ "workflow": sdxl(1024, 20) }))
        .send()
        .await
        .unwrap();
    let job = expect(target, response, StatusCode::CREATED).await;
    assert_eq!(job["status"], "queued", "{}: {job}", target.name);
    let cost = job["estimated_cost"].as_i64().unwrap();
    assert!(cost > 0, "{}: {job}", target.name);
    assert_eq!(
        pool(target, owner).await["reserved"],
        cost,
        "{}",
        target.name
    );

    let response = target
        .post(
            &format!("jobs/{}/cancel", job["id"].as_str().unwrap()),
            &owner.access_token,
            json!({}),
        )
        .await;
    let cancelled = expect(target, response, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled", "{}", target.name);
    let pool = pool(target, owner).await;
    assert_eq!(
        (&pool["reserved"], &pool["used"]),
        (&json!(0), &json!(0)),
        "{}",
        target.name
    );

    let response = target
        .post(
            "jobs",
            &owner.access_token,
            json!({ "workflow": {"1": {"inputs": {}}} }),
        )
        .await;
    expect(target, response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

async fn cron_requeues_a_job_whose_lease_expired(target: &Target, owner: &Owner) {
    let workers = expect(
        target,
        target.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let worker = workers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["default"] == true)
        .expect("a default worker")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = target
        .post(
            &format!("workers/{worker}/runner-tokens"),
            &owner.access_token,
            json!({ "name": "gpu-1" }),
        )
        .await;
    let runner = expect(target, response, StatusCode::CREATED).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = target
        .post(
            "jobs",
            &owner.access_token,
            json!({ "workflow": sdxl(512, 10) }),
        )
        .await;
    let job = expect(target, response, StatusCode::CREATED).await;
    let job_id = job["id"].as_str().unwrap();
    let response = target
        .post(
            "runner/heartbeat",
            &runner,
            json!({ "host": "gpu-1", "gpu": "RTX 4090", "vram_mb": 24576, "version": "0.1.0" }),
        )
        .await;
    expect(target, response, StatusCode::OK).await;
    let response = target
        .post("runner/claim", &runner, json!({ "free_vram_mb": 24576 }))
        .await;
    let claimed = expect(target, response, StatusCode::OK).await;
    assert_eq!(claimed["job_id"], job_id, "{}: {claimed}", target.name);

    // The runner vanishes; its lease runs out (aged here, since an edge clock cannot be
    // moved) and the next cron run hands the job back to the queue.
    file_env(&target.database)
        .await
        .db
        .execute(sql!(
            "UPDATE jobs SET lease_expires_at = lease_expires_at - 3600 WHERE id = ?",
            job_id
        ))
        .await
        .unwrap();
    target.run_cron().await;
    let job = expect(
        target,
        target
            .get(&format!("jobs/{job_id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&job["status"], &job["attempts"]),
        (&json!("queued"), &json!(1)),
        "{}: {job}",
        target.name
    );
}

/// Many requests at once, as a proxy in front of busy GPUs sends them: 200 holds of one
/// credit against a pool of 100 and 100 forward-auth checks, all at the same time. Each is
/// answered for what it is (100 holds, 100 refusals for want of credits, 100 passes), none
/// with a 5xx, and the pool holds exactly what the holds took.
async fn concurrent_requests_are_each_answered_for_what_they_are(target: &Target) {
    let owner = register_and_log_in(target, "initech").await;
    let admin = platform_admin(target, &owner).await;
    // The plan's per-minute limit would answer most of them 429.
    let response = target
        .request(
            Method::PUT,
            &format!("admin/tenants/{}/plan", owner.tenant_id),
        )
        .bearer_auth(&admin)
        .json(&json!({ "plan": "FREE", "overrides": { "requests_per_minute": 1_000_000 } }))
        .send()
        .await
        .unwrap();
    expect(target, response, StatusCode::NO_CONTENT).await;
    grant(target, &admin, &owner, 100).await;

    let holds = (0..200).map(|_| {
        target.post(
            "credits/reservations",
            &owner.access_token,
            json!({ "amount": 1, "reason": "load", "model": "sdxl" }),
        )
    });
    let checks = (0..100).map(|_| {
        target
            .request(Method::GET, "auth/verify")
            .bearer_auth(&owner.access_token)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/comfy/queue")
            .send()
    });
    let (holds, checks) = futures::join!(join_all(holds), join_all(checks));

    let count = |statuses: &[Result<u16, String>], wanted: u16| {
        statuses
            .iter()
            .filter(|status| *status == &Ok(wanted))
            .count()
    };
    let holds: Vec<Result<u16, String>> = holds
        .iter()
        .map(|response| Ok(response.status().as_u16()))
        .collect();
    let checks: Vec<Result<u16, String>> = checks
        .into_iter()
        .map(|check| {
            check
                .map(|response| response.status().as_u16())
                .map_err(|error| error.to_string())
        })
        .collect();
    assert_eq!(
        (count(&holds, 201), count(&holds, 402), count(&checks, 200)),
        (100, 100, 100),
        "{}: holds answered {holds:?}, checks {checks:?}",
        target.name
    );
    let pool = pool(target, &owner).await;
    assert_eq!(
        (&pool["reserved"], &pool["remaining"]),
        (&json!(100), &json!(0)),
        "{}",
        target.name
    );
}

/// The LLM gateway on this runtime, against the OpenAI double on loopback: a call without
/// credits is refused (402) before the provider hears of it; a whole call and a streamed one
/// (its events passed on as written, ended by `[DONE]`) are each charged the usage the
/// provider reported, before the answer ends; a call past the tenant's calls per minute is
/// refused (429 with `Retry-After`).
async fn llm_calls_are_charged_streamed_and_refused(target: &Target) {
    const PROVIDER_KEY: &str = "sk-conformance-0000001";
    let provider = OpenAiDouble::start(PROVIDER_KEY).await;
    let owner = register_and_log_in(target, "hooli").await;
    let admin = platform_admin(target, &owner).await;
    let key = json!({ "name": "double", "kind": "openai", "base_url": provider.base_url(),
                      "api_key": PROVIDER_KEY });
    let key = expect(
        target,
        target.post("admin/llm/provider-keys", &admin, key).await,
        StatusCode::CREATED,
    )
    .await;
    // A credit per prompt token and two per completion token; the double reports 19 and 10.
    let model = json!({ "name": "chat", "deployments": [{ "provider_key_id": key["id"], "model": "gpt-4o" }],
                        "context_window": 8_000, "max_output_tokens": 100,
                        "input_price": 1_000_000, "output_price": 2_000_000 });
    expect(
        target,
        target.post("admin/llm/models", &admin, model).await,
        StatusCode::CREATED,
    )
    .await;
    const COST: i64 = 19 + 2 * 10;
    let chat = |body: Value| {
        target
            .client
            .post(format!("{}/v1/chat/completions", target.base_url))
            .bearer_auth(&owner.access_token)
            .json(&body)
            .send()
    };
    let hello = json!({ "model": "chat", "max_tokens": 50,
                        "messages": [{ "role": "user", "content": "Hello!" }] });

    let broke = expect(
        target,
        chat(hello.clone()).await.unwrap(),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    assert_eq!(
        broke["error"]["code"], "insufficient_credits",
        "{}: {broke}",
        target.name
    );
    assert!(
        provider.requests().is_empty(),
        "{}: the provider was called",
        target.name
    );

    grant(target, &admin, &owner, 1_000).await;
    let limited = json!({ "plan": "FREE", "overrides": { "llm_requests_per_minute": 3 } });
    let response = target
        .request(
            Method::PUT,
            &format!("admin/tenants/{}/plan", owner.tenant_id),
        )
        .bearer_auth(&admin)
        .json(&limited)
        .send()
        .await
        .unwrap();
    expect(target, response, StatusCode::NO_CONTENT).await;

    let whole = expect(target, chat(hello.clone()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(whole["model"], "chat", "{}", target.name);
    assert_eq!(whole["usage"]["completion_tokens"], 10, "{}", target.name);
    assert_eq!(pool(target, &owner).await["used"], COST, "{}", target.name);

    // The provider stops after its first pieces until released: they reach the client
    // before the stream ends, so the runtime passes events on as they come.
    provider.hold_answers();
    let mut streamed = hello.clone();
    streamed["stream"] = json!(true);
    let mut response = chat(streamed).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", target.name);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{}",
        target.name
    );
    let mut text = String::new();
    let early = STREAMED_PIECES[..PIECES_BEFORE_HOLD].concat();
    while !text.contains(&format!(
        "\"content\":\"{}\"",
        STREAMED_PIECES[PIECES_BEFORE_HOLD - 1]
    )) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: the first events did not come before the rest ({early:?})",
                    target.name
                )
            })
            .unwrap()
            .unwrap_or_else(|| panic!("{}: the stream ended early: {text}", target.name));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    provider.release_answers();
    text.push_str(&response.text().await.unwrap());
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{}: {text}", target.name);
    let content: String = events
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, STREAMED_PIECES.concat(), "{}", target.name);
    // Settled before the body ended.
    assert_eq!(
        pool(target, &owner).await["used"],
        2 * COST,
        "{}",
        target.name
    );

    // Three calls of this minute are counted (the 402 too), so the next is refused; should
    // a new minute have begun meanwhile, three more fit first.
    let mut refused = None;
    for _ in 0..4 {
        let response = chat(hello.clone()).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        expect(target, response, StatusCode::OK).await;
    }
    let refused = refused.unwrap_or_else(|| panic!("{}: no call was refused", target.name));
    assert!(
        refused.headers().contains_key("retry-after"),
        "{}",
        target.name
    );
    let body = expect(target, refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        body["error"]["code"], "rate_limit_exceeded",
        "{}: {body}",
        target.name
    );
}
