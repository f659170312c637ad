//! A real browser behind the real Traefik: Debian's Chromium, driven by Playwright for
//! Python (`tests/proxy/browser/sign_in.py`), opens a service behind the shipped Traefik
//! configuration without a session, is sent to Tollgate's sign-in page, signs in (a wrong
//! password first), comes back to the service's page, whose WebSocket passes the same
//! forward-auth, and in the console sees the overview, creates and revokes an API key,
//! reads the ledger and sets alert thresholds, adds a webhook endpoint (the service answers
//! its deliveries) and sends it a test, filters and verifies the audit log,
//! invites a person, moves a bot to another worker, creates a runner token and watches a
//! job (run by a runner the script plays with that token) progress to done; then signs out and is sent to sign in again. A member
//! finds no admin pages. A script's API key goes straight through. Screenshots
//! of each page are kept in `target/screenshots/` (or `TOLLGATE_SCREENSHOTS`).
//!
//! Needs `TOLLGATE_BROWSER_PYTHON` and `TOLLGATE_CHROMIUM`, which
//! `scripts/tools/browser.sh` installs and exports; without them this test fails, saying so.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};
use tollgate::secrets::Keyring;
use tollgate_tests::{
    PASSWORD, TestApp, expect_status,
    oidc_provider::{CLIENT_ID, CLIENT_SECRET, Provider},
    sdxl, spawn_app_with,
};

use crate::{
    support::{RunningProxy, Upstreams, free_port},
    traefik::start_traefik_on,
};

/// How long the browser's whole visit may take.
const VISIT_BOUND: Duration = Duration::from_secs(120);

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `source scripts/tools/browser.sh` (scripts/test.sh does)")
    })
}

/// The page the service serves: who Tollgate said is calling, and the answer of a
/// WebSocket opened beside the page (at `ws`, under the same prefix).
const PAGE: &str = r#"<!doctype html><html><head><title>ComfyUI</title></head><body>
<h1>ComfyUI</h1><p>user <span id="user">USER</span></p><p>socket <span id="socket">closed</span></p>
<script>
const socket = new WebSocket(new URL("ws", location.href).href.replace(/^http/, "ws"));
socket.onopen = () => socket.send("ping");
socket.onmessage = (event) => { document.getElementById("socket").textContent = event.data; };
socket.onerror = () => { document.getElementById("socket").textContent = "refused"; };
</script></body></html>"#;

/// ComfyUI's stand-in: `PAGE` at every path but `/ws`, a WebSocket answering each message
/// with `pong:` and the message at `/ws`.
async fn start_page_and_socket() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    service_fn(|request| async move { Ok::<_, Infallible>(answer(request)) });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    address
}

fn answer(mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    let key = request.headers().get("sec-websocket-key").cloned();
    if let ("/ws", Some(key)) = (request.uri().path(), key) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(Message::Text(text))) = socket.next().await {
                if socket
                    .send(Message::text(format!("pong:{text}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .body(Full::default())
            .unwrap();
    }
    let user = request
        .headers()
        .get("x-tollgate-user-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("nobody")
        .to_owned();
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(PAGE.replace("USER", &user))))
        .unwrap()
}

/// Where the browser's screenshots go.
fn screenshots() -> String {
    std::env::var("TOLLGATE_SCREENSHOTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/screenshots").to_owned()
    })
}

/// Runs the Playwright script `script` (in `proxy/browser/`) with `visit`, within
/// [`VISIT_BOUND`]; a failure shows what the script and the proxy said.
async fn run_visit(python: &str, script: &str, visit: &serde_json::Value, proxy: &RunningProxy) {
    let script = format!("{}/proxy/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(python)
        .arg(&script)
        .arg(visit.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VISIT_BOUND, run)
        .await
        .unwrap_or_else(|_| panic!("the browser's visit took longer than {VISIT_BOUND:?}"))
        .expect("the browser script starts");
    assert!(
        output.status.success(),
        "the browser's visit ({script}) failed:\n{}\n{}\nproxy log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        proxy.log()
    );
}

/// Tollgate as the proxy at `port` fronts it: its public URL on `auth.tollgate.test`, the
/// session cookie shared by every subdomain, plain HTTP, and a master key for provider keys.
async fn app_behind_the_proxy(port: u16) -> TestApp {
    spawn_app_with(|config| {
        config.public_url = format!("http://auth.tollgate.test:{port}");
        config.cookie_domain = Some("tollgate.test".into());
        config.cookie_secure = false;
        config.secrets = Keyring::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    })
    .await
}

/// The shipped Traefik configuration on `port`, in front of `app` and of the service
/// (page, socket and webhook receiver) it starts, routing.
async fn traefik_in_front_of(app: &TestApp, port: u16) -> (RunningProxy, SocketAddr) {
    let service = start_page_and_socket().await;
    let upstreams = Upstreams {
        tollgate: app.base_url.trim_start_matches("http://").parse().unwrap(),
        comfyui: service,
        llm: service,
    };
    let mut proxy = start_traefik_on(&upstreams, port);
    proxy.wait_until_routing().await;
    (proxy, service)
}

async fn created(response: reqwest::Response) -> serde_json::Value {
    expect_status(response, StatusCode::CREATED).await
}

#[tokio::test]
async fn a_browser_signs_in_through_traefik_uses_the_service_and_its_socket_and_signs_out() {
    let python = required("TOLLGATE_BROWSER_PYTHON");
    let chromium = required("TOLLGATE_CHROMIUM");
    let port = free_port();
    let app = app_behind_the_proxy(port).await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let raised = json!({ "plan": "FREE", "overrides": { "max_workers": 2, "requests_per_minute": 100_000 } });
    app.assign_plan(&admin, &owner, &raised).await;
    app.grant_pool_credits(&admin, &owner, 5_000).await;
    let member = app.add_user(&owner, "member", "member").await;
    let second = created(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Second pool" }),
        )
        .await,
    )
    .await;
    created(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Portraits", "workflow": sdxl(512, 20) }),
        )
        .await,
    )
    .await;
    let job = created(
        app.post(
            "jobs",
            &owner.access_token,
            &json!({ "workflow": sdxl(512, 20) }),
        )
        .await,
    )
    .await;
    let workers = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let default_worker = workers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["default"] == true)
        .unwrap()
        .clone();

    let (proxy, service) = traefik_in_front_of(&app, port).await;

    // The queued job holds its estimate (2 credits) of the 5,000.
    // A script with an API key in a header still goes straight through.
    let key = app.create_api_key(&owner, &["comfy:read"]).await;
    let scripted = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/comfy/"))
        .header("x-api-key", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), StatusCode::OK);
    assert!(scripted.text().await.unwrap().contains(&owner.user_id));

    let visit = json!({
        "chromium": chromium,
        "service": format!("http://comfy.tollgate.test:{port}/comfy/"),
        "console": format!("http://auth.tollgate.test:{port}/console"),
        "tenant": owner.tenant_slug,
        "email": owner.email,
        "password": owner.password,
        "user_id": owner.user_id,
        "pool_credits": "4,998",
        "member_email": member.email,
        "member_password": member.password,
        "bot": "Portraits",
        "default_worker": default_worker["name"],
        "other_worker": second["name"],
        "job_id": job["id"],
        "api": format!("http://127.0.0.1:{port}/api/v1/"),
        "webhook_url": format!("http://{service}/hooks"),
        "screenshots": screenshots(),
    });
    run_visit(&python, "sign_in.py", &visit, &proxy).await;
}

#[tokio::test]
async fn a_reseller_signs_up_and_brands_its_console_and_the_operator_manages_it() {
    let python = required("TOLLGATE_BROWSER_PYTHON");
    let chromium = required("TOLLGATE_CHROMIUM");
    let port = free_port();
    let app = app_behind_the_proxy(port).await;
    let operator_email = "ops@tollgate.test";
    app.platform_admin(operator_email).await;
    let (proxy, _) = traefik_in_front_of(&app, port).await;

    let visit = json!({
        "chromium": chromium,
        "console": format!("http://auth.tollgate.test:{port}/console"),
        "tenant_console": format!("http://pixel.tollgate.test:{port}/console"),
        "email": "pia@pixelforge.test",
        "password": PASSWORD,
        "operator_email": operator_email,
        "operator_password": PASSWORD,
        "screenshots": screenshots(),
    });
    run_visit(&python, "brand_and_operate.py", &visit, &proxy).await;
}

#[tokio::test]
async fn a_person_signs_in_with_the_organisations_identity_provider_and_reaches_the_service() {
    let python = required("TOLLGATE_BROWSER_PYTHON");
    let chromium = required("TOLLGATE_CHROMIUM");
    let port = free_port();
    let provider = Provider::start(&format!(
        "http://auth.tollgate.test:{port}/api/v1/auth/sso/callback"
    ))
    .await;
    let app = app_behind_the_proxy(port).await;
    let owner = app.register("acme").await;
    let response = app
        .post(
            "sso/providers",
            &owner.access_token,
            &json!({ "name": "Forge ID", "kind": "oidc", "issuer": provider.issuer,
                     "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET }),
        )
        .await;
    created(response).await;
    provider.signs_in_as("p-owner", &owner.email).await;
    let (proxy, _) = traefik_in_front_of(&app, port).await;

    let service = format!("http://comfy.tollgate.test:{port}/comfy/");
    let visit = json!({
        "chromium": chromium,
        "sign_in": reqwest::Url::parse_with_params(
            &format!("http://acme.tollgate.test:{port}/console/sign-in"),
            [("return_to", &service)],
        )
        .unwrap()
        .as_str(),
        "service": service,
        "provider_name": "Forge ID",
        "screenshots": screenshots(),
    });
    run_visit(&python, "sso.py", &visit, &proxy).await;
}
