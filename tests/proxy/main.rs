//! Tollgate behind a real reverse proxy: nginx's `auth_request` asks
//! `GET /api/v1/auth/verify` about every request and lets through only what Tollgate allows.
//!
//! The protected service is a second nginx server on a unix socket that answers with the
//! identity header the gate passed on. It has to be a separate upstream: a `return` in the
//! protected location itself would run in nginx's rewrite phase, before `auth_request`
//! (access phase), and answer every request unchecked.
//!
//! nginx must be installed (Debian: `apt-get install -y nginx`); without it this test fails.

use std::{
    fs::File,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use tollgate_tests::spawn_app;

/// How long nginx may take to start listening.
const STARTUP_BOUND: Duration = Duration::from_secs(15);

/// A running nginx; dropping it kills the process.
struct Nginx {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Nginx {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary: on `PATH`, or in the sbin directories a non-root `PATH` may lack.
fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and this test drives a real nginx in front of \
                 Tollgate: install it (Debian/Ubuntu: `apt-get install -y nginx`; \
                 scripts/test.sh does this)"
            )
        })
}

/// A port that was free a moment ago: bind port 0, read the port, let it go.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn config(dir: &Path, port: u16, tollgate: &str) -> String {
    let dir = dir.display();
    format!(
        r#"
# One process running as the invoking user: no worker has to reach into the temp dir as
# another user.
master_process off;
worker_processes 1;
events {{ worker_connections 64; }}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # The protected service: it answers with what the gate told it about the caller.
    server {{
        listen unix:{dir}/backend.sock;
        default_type text/plain;
        location / {{
            return 200 "tenant=$http_x_tollgate_tenant\n";
        }}
    }}

    # The proxy: every request is first asked about at Tollgate.
    server {{
        listen 127.0.0.1:{port};

        location = /_tollgate_verify {{
            internal;
            proxy_pass {tollgate}/api/v1/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization $http_authorization;
            proxy_set_header X-API-Key $http_x_api_key;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }}

        location / {{
            auth_request /_tollgate_verify;
            auth_request_set $tollgate_tenant $upstream_http_x_tollgate_tenant;
            proxy_set_header X-Tollgate-Tenant $tollgate_tenant;
            proxy_pass http://unix:{dir}/backend.sock;
        }}
    }}
}}
"#
    )
}

/// Starts nginx in front of `tollgate` and waits, bounded, until it accepts connections.
fn start_nginx(dir: &Path, tollgate: &str) -> Nginx {
    let binary = nginx_binary();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port, tollgate)).expect("the nginx config is written");
    let log = dir.join("nginx.log");
    let child = Command::new(&binary)
        .arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}; error_log stderr;",
            dir.join("nginx.pid").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("the nginx log file"))
        .spawn()
        .unwrap_or_else(|error| panic!("{} could not be started: {error}", binary.display()));
    let mut nginx = Nginx {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + STARTUP_BOUND;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return nginx;
        }
        if let Some(status) = nginx.child.try_wait().expect("nginx's status") {
            panic!("nginx exited ({status}) during startup:\n{}", nginx.log());
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on port {port} within {STARTUP_BOUND:?}:\n{}",
            nginx.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn nginx_lets_through_only_what_tollgate_allows() {
    let app = spawn_app().await;
    let owner = app.register("proxied").await;
    let key = app.create_api_key(&owner, &["comfy:read"]).await;
    let key = key["key"].as_str().expect("the key's secret");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let nginx = start_nginx(dir.path(), &app.base_url);
    let send = |method: Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", nginx.base_url))
    };

    // No credentials: Tollgate's 401 and its challenge come back through nginx.
    let response = send(Method::GET, "/comfy/history").send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "nginx log:\n{}",
        nginx.log()
    );
    assert!(
        response
            .headers()
            .get("www-authenticate")
            .is_some_and(|value| value.to_str().unwrap().starts_with("Bearer")),
        "a 401 without a Bearer challenge: {:?}",
        response.headers()
    );

    // A session token: through, and the service learns the tenant from the gate.
    let response = send(Method::GET, "/comfy/history")
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "tenant=proxied\n");

    // A forged token is refused like no token at all.
    let response = send(Method::GET, "/comfy/history")
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A key scoped comfy:read may read ComfyUI but not submit work to it.
    let response = send(Method::GET, "/comfy/history")
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "tenant=proxied\n");
    let response = send(Method::POST, "/comfy/prompt")
        .header("X-API-Key", key)
        .header("Content-Type", "application/json")
        .body(r#"{"prompt":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // ...nor read anything outside its scope.
    let response = send(Method::GET, "/llm/models")
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    drop(nginx);
}
