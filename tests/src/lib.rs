//! The harness of the black-box tests: [`spawn_app`] starts the real native server on a
//! free loopback port with a fresh database file, and the helpers drive it over HTTP the
//! way a client would. Dropping the [`TestApp`] stops the server.

pub mod edge;
pub mod hrana_server;
pub mod loopback;
pub mod oidc_provider;
pub mod openai_double;

use std::path::PathBuf;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tollgate::{
    Env,
    auth::password::Password,
    clock::{Clock, ManualClock, SystemClock},
    config::Config,
    tenancy::{Email, admin},
};
use tollgate_server::{
    database::Database,
    outbound::NativeOutbound,
    server::{self, ConnectionLimits, RunningServer, ServerClock, ServerSettings},
};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    /// The server's clock: it starts at the real time and moves only by `advance_clock`.
    pub clock: ManualClock,
    config: Config,
    server: Option<RunningServer>,
    /// The libSQL HTTP endpoint the server reaches its database through, in Hrana mode.
    hrana: Option<hrana_server::HranaServer>,
    _dir: tempfile::TempDir,
}

/// A server with the test defaults: a fixed JWT secret, client addresses taken from
/// `X-Forwarded-For` (so tests can act as distinct clients), generous attempt limits,
/// `tollgate.test` as the base domain of tenant subdomains, and webhooks allowed to reach
/// loopback (where test receivers listen).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose configuration `configure` adjusts first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_setup(Setup::default(), configure).await
}

/// What a test arranges beyond the configuration.
#[derive(Default)]
pub struct Setup {
    /// Reach the database through a Hrana test server admitting requests and naming errors
    /// this way, whether `TOLLGATE_TESTS_OVER_HRANA` is set or not ([`TestApp::hrana`]).
    pub hrana: Option<hrana_server::HranaSettings>,
}

/// A server arranged as `setup` says, whose configuration `configure` adjusts first.
pub async fn spawn_app_with_setup(setup: Setup, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::from_lookup(|name| match name {
        "TOLLGATE_JWT_SECRET" => Some("test-secret-test-secret-test-secret-0123".into()),
        "TOLLGATE_TRUST_FORWARDED_FOR" => Some("true".into()),
        "TOLLGATE_AUTH_ATTEMPTS_PER_IP" => Some("1000".into()),
        "TOLLGATE_AUTH_ATTEMPTS_PER_ACCOUNT" => Some("1000".into()),
        "TOLLGATE_BASE_DOMAIN" => Some("tollgate.test".into()),
        // Webhook receivers in tests listen on loopback.
        "TOLLGATE_WEBHOOKS_ALLOW_PRIVATE" => Some("true".into()),
        _ => None,
    })
    .expect("the test configuration is valid");
    configure(&mut config);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db_path = dir.path().join("tollgate.db");
    let db = server::open_database(db_path.to_str().unwrap(), 0)
        .await
        .expect("the database opens and migrates");
    // With TOLLGATE_TESTS_OVER_HRANA set, the server reaches the same file through the Hrana
    // test server (its remote mode, as the edge does), while the harness keeps reading the
    // file directly: the suites then check the remote adapter and the test server alike.
    let hrana_settings = setup.hrana.or_else(|| {
        std::env::var_os("TOLLGATE_TESTS_OVER_HRANA")
            .map(|_| hrana_server::HranaSettings::default())
    });
    let (database, hrana) = if let Some(settings) = hrana_settings {
        let hrana = hrana_server::HranaServer::start_with(&db_path, "test-token", settings).await;
        let remote = Database::open(&hrana.url, Some(hrana.token.clone()))
            .await
            .expect("a remote database URL");
        (remote, Some(hrana))
    } else {
        (Database::from(db), None)
    };
    let clock = ManualClock::starting_at(SystemClock.now());
    let running = server::start(
        ServerSettings {
            address: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            cron_interval: std::time::Duration::from_secs(3600),
            config: config.clone(),
            clock: ServerClock::Manual(clock.clone()),
            connections: ConnectionLimits::default(),
        },
        database,
    )
    .expect("the server starts");
    TestApp {
        base_url: format!("http://{}", running.local_addr),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db_path,
        clock,
        config,
        server: Some(running),
        hrana,
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A registered tenant's owner, or any signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub tenant_id: String,
    pub tenant_slug: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// The Hrana test server between the server and its database, to switch how it answers.
    pub fn hrana(&self) -> &hrana_server::HranaServer {
        self.hrana
            .as_ref()
            .expect("this app reaches its database over Hrana (Setup::hrana)")
    }

    /// Moves the server's clock forward: past an expiry, into the next rate-limit window.
    pub fn advance_clock(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    /// Runs the shared cron entry point once against this server's database and clock, as
    /// the server's own loop (or an edge runtime's trigger) does.
    pub async fn run_cron(&self) -> tollgate::cron::CronReport {
        tollgate::cron::run(&self.env().await).await.unwrap()
    }

    async fn env(&self) -> Env {
        let db = server::open_database(self.db_path.to_str().unwrap(), 0)
            .await
            .unwrap();
        Env::new(
            Box::new(db),
            Box::new(self.clock.clone()),
            Box::new(NativeOutbound::new(self.config.webhooks_allow_private)),
            self.config.clone(),
        )
    }

    /// Creates a platform admin the way the operator's CLI does (`tollgate-server admin
    /// create-platform-admin`), and signs it in; returns its access token.
    pub async fn platform_admin(&self, email: &str) -> String {
        create_platform_admin(&self.env().await, email).await;
        let response = self
            .post_public(
                "admin/login",
                &json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        expect_status(response, StatusCode::OK).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// As the platform admin `admin_token`: `PUT admin/tenants/{id}/plan`, expecting 204.
    pub async fn assign_plan(&self, admin_token: &str, tenant: &TestUser, body: &Value) {
        let path = format!("admin/tenants/{}/plan", tenant.tenant_id);
        expect_status(
            self.put(&path, admin_token, body).await,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// As the platform admin `admin_token`: grants `amount` credits into the tenant's pool.
    pub async fn grant_pool_credits(&self, admin_token: &str, tenant: &TestUser, amount: i64) {
        let path = format!("admin/tenants/{}/credits/grants", tenant.tenant_id);
        let grant = json!({ "amount": amount, "reason": "test grant" });
        expect_status(
            self.post(&path, admin_token, &grant).await,
            StatusCode::CREATED,
        )
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{}", self.base_url, path.trim_start_matches('/'))
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::PUT, path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `POST` without credentials.
    pub async fn post_public(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers tenant `slug` with owner `owner@<slug>.test`.
    pub async fn register(&self, slug: &str) -> TestUser {
        let email = format!("owner@{slug}.test");
        let response = self
            .post_public(
                "auth/register",
                &json!({
                    "tenant_name": format!("{slug} Inc."),
                    "tenant_slug": slug,
                    "email": email,
                    "password": PASSWORD,
                    "name": "Owner",
                }),
            )
            .await;
        let body = expect_status(response, StatusCode::CREATED).await;
        TestUser {
            tenant_id: body["tenant"]["id"].as_str().unwrap().into(),
            tenant_slug: slug.into(),
            user_id: body["user"]["id"].as_str().unwrap().into(),
            email,
            password: PASSWORD.into(),
            access_token: body["access_token"].as_str().unwrap().into(),
            refresh_token: body["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// Signs in with the tenant named in the body.
    pub async fn login(&self, tenant_slug: &str, email: &str, password: &str) -> Response {
        self.post_public(
            "auth/login",
            &json!({ "tenant": tenant_slug, "email": email, "password": password }),
        )
        .await
    }

    /// Has `admin` create a user with `role` in its tenant, then signs that user in.
    pub async fn add_user(&self, admin: &TestUser, name: &str, role: &str) -> TestUser {
        let email = format!("{name}@{}.test", admin.tenant_slug);
        let response = self
            .post(
                "users",
                &admin.access_token,
                &json!({ "email": email, "name": name, "password": PASSWORD, "role": role }),
            )
            .await;
        let created = expect_status(response, StatusCode::CREATED).await;
        let response = self.login(&admin.tenant_slug, &email, PASSWORD).await;
        let tokens = expect_status(response, StatusCode::OK).await;
        TestUser {
            tenant_id: admin.tenant_id.clone(),
            tenant_slug: admin.tenant_slug.clone(),
            user_id: created["id"].as_str().unwrap().into(),
            email,
            password: PASSWORD.into(),
            access_token: tokens["access_token"].as_str().unwrap().into(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// Creates an API key for `user` with `scopes`; returns the key's JSON (secret in `key`).
    pub async fn create_api_key(&self, user: &TestUser, scopes: &[&str]) -> Value {
        let response = self
            .post(
                "api-keys",
                &user.access_token,
                &json!({ "name": "test key", "scopes": scopes }),
            )
            .await;
        expect_status(response, StatusCode::CREATED).await
    }

    /// The mails queued for `recipient`, oldest first, as `(template, payload)`. This reads
    /// the outbox table the way a mail relay would: it is the test's inbox.
    pub async fn mailbox(&self, recipient: &str) -> Vec<(String, Value)> {
        let rows = self
            .query(
                "SELECT template, payload FROM email_outbox WHERE recipient = ? ORDER BY created_at, rowid",
                vec![recipient.into()],
            )
            .await;
        rows.into_iter()
            .map(|row| {
                let template = row[0].as_str().unwrap().to_owned();
                let payload = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
                (template, payload)
            })
            .collect()
    }

    /// The token of the newest mail of `template` to `recipient`.
    pub async fn mailed_token(&self, recipient: &str, template: &str) -> String {
        self.mailbox(recipient)
            .await
            .into_iter()
            .rev()
            .find(|(kind, _)| kind == template)
            .unwrap_or_else(|| panic!("no {template} mail to {recipient}"))
            .1["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Reads the database directly, to inspect invariants (counts, stored hashes); state is
    /// arranged through the API, never by writing rows.
    pub async fn query(&self, sql: &str, params: Vec<libsql::Value>) -> Vec<Vec<Value>> {
        let db = libsql::Builder::new_local(&self.db_path)
            .build()
            .await
            .unwrap();
        let connection = db.connect().unwrap();
        let mut rows = connection.query(sql, params).await.unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.unwrap() {
            let values = (0..rows.column_count())
                .map(|index| match row.get_value(index).unwrap() {
                    libsql::Value::Null => Value::Null,
                    libsql::Value::Integer(number) => json!(number),
                    libsql::Value::Real(number) => json!(number),
                    libsql::Value::Text(text) => json!(text),
                    libsql::Value::Blob(bytes) => json!(bytes),
                })
                .collect();
            out.push(values);
        }
        out
    }
}

/// Asserts the status and returns the JSON body (`null` when empty).
/// Creates a platform admin with [`PASSWORD`] the way the operator's CLI does (`tollgate-server
/// admin create-platform-admin`): straight in the database, since no API may.
pub async fn create_platform_admin(env: &Env, email: &str) {
    let password = Password::parse("password", PASSWORD.into()).unwrap();
    admin::create_platform_admin(env, &Email::parse("email", email).unwrap(), &password)
        .await
        .unwrap();
}

/// The ports over the database file at `db_path`, opened beside whatever runtime serves it,
/// on the wall clock and with no outbound HTTP: for arrangements and checks no API makes.
pub async fn file_env(db_path: &std::path::Path) -> Env {
    let db = tollgate_server::db::LibsqlDb::open(db_path.to_str().unwrap())
        .await
        .unwrap();
    let config =
        Config::from_lookup(|name| (name == "TOLLGATE_JWT_SECRET").then(|| "x".repeat(40)))
            .unwrap();
    Env::new(
        Box::new(db),
        Box::new(SystemClock),
        Box::new(tollgate::outbound::NoOutbound),
        config,
    )
}

/// SDXL text-to-image on `width`² with `steps`: estimate `1 + ceil(Mpx × steps / 10)` credits.
pub fn sdxl(width: u64, steps: u64) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": width, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
                                                     "latent_image": ["5", 0], "steps": steps, "seed": 1, "cfg": 7,
                                                     "sampler_name": "euler", "scheduler": "normal", "denoise": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "out"}},
    })
}

pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Asserts an error answer: its status, its `error.code`, and the one error shape.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(response, status).await;
    assert_eq!(body["error"]["code"], code, "unexpected error: {body}");
    assert!(
        body["error"]["message"].is_string(),
        "error without message: {body}"
    );
    assert!(
        body["error"]["details"].is_object(),
        "error without details: {body}"
    );
    body
}

/// `(total, used, reserved)` of an account, read from the database, and the sums of its
/// ledger's deltas: the two must agree.
pub async fn account_and_ledger(app: &TestApp, account_id: &str) -> ([i64; 3], [i64; 3]) {
    let account = app
        .query(
            "SELECT COALESCE(total, 0), used, reserved FROM credit_accounts WHERE id = ?",
            vec![account_id.into()],
        )
        .await;
    let ledger = app
        .query(
            "SELECT COALESCE(SUM(total_delta), 0), COALESCE(SUM(used_delta), 0), COALESCE(SUM(reserved_delta), 0)
             FROM credit_ledger WHERE account_id = ?",
            vec![account_id.into()],
        )
        .await;
    let numbers = |row: &Vec<Value>| [0, 1, 2].map(|index| row[index].as_i64().unwrap());
    (numbers(&account[0]), numbers(&ledger[0]))
}

/// POSTs JSON `body` to `url` (with `token` as a bearer token, if any) and panics unless the
/// answer is a 2xx; its JSON.
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    token: Option<String>,
    body: Value,
) -> Value {
    let mut request = client.post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {body}");
    body
}
