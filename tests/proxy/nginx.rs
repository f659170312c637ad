//! nginx's `auth_request` in front of the services, configured by the shipped
//! `deploy/nginx/tollgate.conf`.
//!
//! nginx must be installed (Debian: `apt-get install -y nginx`; scripts/test.sh does this);
//! without it these tests fail.

use std::{path::PathBuf, process::Command};

use tollgate_tests::{spawn_app, spawn_app_with};

use crate::{
    scenarios,
    support::{RunningProxy, Stack, Upstreams, deploy_file, free_port, replace},
};

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

/// Starts nginx with the shipped site, its addresses pointed at `upstreams`.
fn start_nginx(upstreams: &Upstreams) -> RunningProxy {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let mut site = deploy_file("nginx/tollgate.conf");
    for (shipped, local) in [
        ("listen 80;".to_owned(), format!("listen 127.0.0.1:{port};")),
        (
            "server 127.0.0.1:8787;".to_owned(),
            format!("server {};", upstreams.tollgate),
        ),
        (
            "server 127.0.0.1:8188;".to_owned(),
            format!("server {};", upstreams.comfyui),
        ),
        (
            "server 127.0.0.1:8000;".to_owned(),
            format!("server {};", upstreams.llm),
        ),
    ] {
        site = replace(&site, &shipped, &local);
    }
    let site_path = dir.path().join("tollgate.conf");
    std::fs::write(&site_path, site).expect("the site is written");
    let scratch = dir.path().display();
    // One process running as the invoking user: no worker has to reach into the temporary
    // directory as another user.
    let main = format!(
        r#"
master_process off;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {scratch}/client_body;
    proxy_temp_path {scratch}/proxy;
    fastcgi_temp_path {scratch}/fastcgi;
    uwsgi_temp_path {scratch}/uwsgi;
    scgi_temp_path {scratch}/scgi;
    include {site};
}}
"#,
        site = site_path.display()
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).expect("the nginx config is written");
    let mut command = Command::new(nginx_binary());
    command
        .arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&main_path)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}; error_log stderr;",
            dir.path().join("nginx.pid").display()
        ));
    RunningProxy::spawn(command, port, dir)
}

#[tokio::test]
async fn nginx_lets_through_only_what_tollgate_allows() {
    let stack = Stack::start(spawn_app().await, start_nginx).await;
    scenarios::only_what_tollgate_allows_gets_through(&stack).await;
}

#[tokio::test]
async fn through_nginx_a_scoped_key_reaches_no_other_service_by_any_encoding() {
    let stack = Stack::start(spawn_app().await, start_nginx).await;
    scenarios::a_scoped_key_reaches_no_other_service_by_any_encoding(&stack).await;
}

#[tokio::test]
async fn through_nginx_a_forged_forwarded_for_does_not_escape_the_login_limit() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let stack = Stack::start(app, start_nginx).await;
    scenarios::a_forged_forwarded_for_does_not_escape_the_login_limit(&stack).await;
}
