//! The `tollgate-server` binary as an operator runs it: `migrate`, the admin commands,
//! `serve` with a graceful stop on SIGTERM, and its connection limits against clients that
//! stall, within a limit on open files.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;
use tollgate::db::MIGRATIONS;

const BINARY: &str = env!("CARGO_BIN_EXE_tollgate-server");
const JWT_SECRET: &str = "cli-test-secret-cli-test-secret-0123456";
const PASSWORD: &str = "correct horse battery staple";
/// Bounds of the waits on a served instance: startup and graceful stop.
const STARTUP_BOUND: Duration = Duration::from_secs(30);
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);
/// The bound of a one-shot command (migrate, admin).
const COMMAND_BOUND: Duration = Duration::from_secs(60);

/// `tollgate-server --database <db> <args…>`, independent of the caller's `TOLLGATE_*`.
fn command(db: &Path, args: &[&str]) -> Command {
    limited_command(None, db, args)
}

/// [`command`], with at most `open_files` file descriptors when given (through the shell's
/// `ulimit`, as a unit file or a container sets it).
fn limited_command(open_files: Option<u32>, db: &Path, args: &[&str]) -> Command {
    let mut command = match open_files {
        None => Command::new(BINARY),
        Some(limit) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg("ulimit -n \"$0\" && exec \"$@\"")
                .arg(limit.to_string())
                .arg(BINARY);
            shell
        }
    };
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOLLGATE_") {
            command.env_remove(name);
        }
    }
    command
        .env("TOLLGATE_JWT_SECRET", JWT_SECRET)
        .env("TOLLGATE_LOG", "info")
        .arg("--database")
        .arg(db)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion, bounded (a command that would serve instead of failing is
/// killed); returns its status, stdout and stderr.
fn run(db: &Path, args: &[&str]) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let child = command(db, args)
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .expect("tollgate-server can be run");
    let mut guard = Killed(child);
    let deadline = Instant::now() + COMMAND_BOUND;
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`tollgate-server {}` did not finish within {COMMAND_BOUND:?}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |file: &mut File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// A child process that is killed when dropped, if it still runs.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn succeed(db: &Path, args: &[&str]) -> String {
    let output = run(db, args);
    assert!(
        output.status.success(),
        "`tollgate-server {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs a command that must fail; returns its stderr.
fn fail(db: &Path, args: &[&str]) -> String {
    let output = run(db, args);
    assert!(
        !output.status.success(),
        "`tollgate-server {}` succeeded but should have failed:\nstdout: {}",
        args.join(" "),
        text(&output.stdout)
    );
    text(&output.stderr)
}

async fn query(db: &Path, sql: &str) -> Vec<Vec<libsql::Value>> {
    let database = libsql::Builder::new_local(db).build().await.unwrap();
    let connection = database.connect().unwrap();
    let mut rows = connection.query(sql, ()).await.unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        out.push(
            (0..rows.column_count())
                .map(|index| row.get_value(index).unwrap())
                .collect(),
        );
    }
    out
}

/// The columns of the `list-tenants` line that names `slug`: slug, status, plan, users, id.
fn tenant_row(listing: &str, slug: &str) -> Vec<String> {
    listing
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|columns| columns.first().is_some_and(|first| first == slug))
        .unwrap_or_else(|| panic!("no line for tenant {slug} in:\n{listing}"))
}

/// How a served instance starts beyond its database: more arguments, and a limit on its
/// open files.
#[derive(Default)]
struct Launch<'a> {
    args: &'a [&'a str],
    open_files: Option<u32>,
}

/// A served instance; dropping it kills the process if it still runs (through `Killed`).
struct Served {
    child: Killed,
    log: PathBuf,
}

impl Served {
    /// `tollgate-server serve` on a kernel-chosen loopback port; returns once it answers
    /// `GET /api/v1/health` with 200, with its address.
    async fn start(db: &Path, log: PathBuf, launch: Launch<'_>) -> (Self, String) {
        let mut args = vec!["--address", "127.0.0.1:0", "--threads", "1"];
        args.extend_from_slice(launch.args);
        args.push("serve");
        let child = limited_command(launch.open_files, db, &args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("the server log file"))
            .spawn()
            .expect("tollgate-server starts");
        let mut served = Served {
            child: Killed(child),
            log,
        };
        let deadline = Instant::now() + STARTUP_BOUND;
        let client = reqwest::Client::new();
        loop {
            if let Some(address) = served.address() {
                let health = client
                    .get(format!("http://{address}/api/v1/health"))
                    .send()
                    .await;
                if health.is_ok_and(|response| response.status() == StatusCode::OK) {
                    return (served, address);
                }
            }
            if let Some(status) = served.child.0.try_wait().unwrap() {
                panic!("the server exited ({status}) at startup:\n{}", served.log());
            }
            assert!(
                Instant::now() < deadline,
                "the server was not healthy within {STARTUP_BOUND:?}:\n{}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address from the server's "Tollgate is listening address=…" line.
    fn address(&self) -> Option<String> {
        let log = self.log();
        let line = log
            .lines()
            .find(|line| line.contains("Tollgate is listening"))?;
        let address = line.split("address=").nth(1)?.split_whitespace().next()?;
        Some(address.to_owned())
    }

    /// Sends SIGTERM and waits, bounded, for the process to exit; returns its exit code.
    fn terminate(&mut self) -> Option<i32> {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.0.id().to_string())
            .status()
            .expect("the kill command runs");
        assert!(signalled.success(), "kill -TERM failed: {signalled}");
        let deadline = Instant::now() + SHUTDOWN_BOUND;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within {SHUTDOWN_BOUND:?} of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test]
async fn migrate_creates_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");

    let stdout = succeed(&db, &["migrate"]);
    assert!(stdout.contains("schema is current"), "stdout: {stdout}");
    let tables = query(
        &db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('tenants', 'users', 'api_keys')",
    )
    .await;
    assert_eq!(tables.len(), 3, "the schema's tables: {tables:?}");
    let versions = "SELECT version, applied_at FROM schema_migrations ORDER BY version";
    let applied = query(&db, versions).await;
    let expected: Vec<libsql::Value> = MIGRATIONS
        .iter()
        .map(|migration| libsql::Value::Integer(migration.version))
        .collect();
    assert_eq!(
        applied.iter().map(|row| row[0].clone()).collect::<Vec<_>>(),
        expected
    );

    // A second run finds nothing to do and changes nothing.
    let stdout = succeed(&db, &["migrate"]);
    assert!(stdout.contains("schema is current"), "stdout: {stdout}");
    assert_eq!(query(&db, versions).await, applied);
}

#[tokio::test]
async fn a_database_newer_than_the_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("newer.db");
    succeed(&db, &["migrate"]);
    // A later build's migration: the one state no API call can produce.
    let newer = MIGRATIONS.last().unwrap().version + 1;
    let database = libsql::Builder::new_local(&db).build().await.unwrap();
    database
        .connect()
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)",
            [newer],
        )
        .await
        .unwrap();
    drop(database);

    for args in [
        &["migrate"][..],
        &["admin", "list-tenants"],
        &["--address", "127.0.0.1:0", "serve"],
    ] {
        let stderr = fail(&db, args);
        assert!(
            stderr.contains("newer") && stderr.contains(&newer.to_string()),
            "`{}` should say the database is newer; stderr: {stderr}",
            args.join(" ")
        );
    }
}

#[tokio::test]
async fn admin_commands_manage_tenants_and_operators() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("admin.db");
    let create_tenant = [
        "admin",
        "create-tenant",
        "--slug",
        "acme",
        "--name",
        "Acme Inc.",
        "--owner-email",
        "owner@acme.test",
        "--owner-password",
        PASSWORD,
    ];

    let stdout = succeed(&db, &create_tenant);
    assert!(stdout.contains("acme"), "stdout: {stdout}");
    let row = tenant_row(&succeed(&db, &["admin", "list-tenants"]), "acme");
    assert_eq!(row[1..4], ["active", "FREE", "1"], "{row:?}");

    // The slug is taken now; a bad slug and a short password are refused before any write.
    let stderr = fail(&db, &create_tenant);
    assert!(!stderr.is_empty());
    let mut bad_slug = create_tenant;
    bad_slug[3] = "Not A Slug!";
    fail(&db, &bad_slug);
    let mut short_password = create_tenant;
    short_password[3] = "other";
    short_password[9] = "short";
    fail(&db, &short_password);
    let listing = succeed(&db, &["admin", "list-tenants"]);
    assert_eq!(
        listing.lines().count(),
        2,
        "only the header and acme: {listing}"
    );

    succeed(&db, &["admin", "suspend-tenant", "acme"]);
    let row = tenant_row(&succeed(&db, &["admin", "list-tenants"]), "acme");
    assert_eq!(row[1], "suspended", "{row:?}");
    fail(&db, &["admin", "suspend-tenant", "no-such-tenant"]);

    let admin = [
        "admin",
        "create-platform-admin",
        "--email",
        "ops@tollgate.test",
        "--password",
        PASSWORD,
    ];
    succeed(&db, &admin);
    fail(&db, &admin);

    // The accounts the CLI made sign in against a served instance.
    let (mut served, address) =
        Served::start(&db, dir.path().join("server.log"), Launch::default()).await;
    let base_url = format!("http://{address}");
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base_url}/api/v1/admin/login"))
        .json(&json!({ "email": "ops@tollgate.test", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let body: serde_json::Value = login.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");

    // The suspended tenant's owner is refused until the tenant is reactivated.
    let owner_login = || {
        client
            .post(format!("{base_url}/api/v1/auth/login"))
            .json(&json!({ "tenant": "acme", "email": "owner@acme.test", "password": PASSWORD }))
            .send()
    };
    assert_eq!(owner_login().await.unwrap().status(), StatusCode::FORBIDDEN);
    succeed(&db, &["admin", "reactivate-tenant", "acme"]);
    let row = tenant_row(&succeed(&db, &["admin", "list-tenants"]), "acme");
    assert_eq!(row[1], "active", "{row:?}");
    assert_eq!(owner_login().await.unwrap().status(), StatusCode::OK);

    assert_eq!(served.terminate(), Some(0));
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let (mut served, address) =
        Served::start(&db, dir.path().join("server.log"), Launch::default()).await;
    let base_url = format!("http://{address}");

    let health = reqwest::get(format!("{base_url}/api/v1/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    assert_eq!(
        served.terminate(),
        Some(0),
        "exit status; log:\n{}",
        served.log()
    );
    let log = served.log();
    assert!(
        log.lines().any(|line| line.contains("stopped")),
        "no \"stopped\" in the log:\n{log}"
    );
    assert!(
        reqwest::get(format!("{base_url}/api/v1/health"))
            .await
            .is_err(),
        "the port still answers after the server stopped"
    );
}

/// How a stalled client's connection ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The server answered (its status) and closed the connection.
    Answered(u16),
    /// The server closed the connection without a word, or reset it.
    Closed,
}

/// Opens a connection and sends part of a request: its headers and one byte of a 100-byte
/// body, or (with `in_headers`) only part of its headers. Then waits, bounded, for the
/// server to end the connection.
async fn stall(address: &str, in_headers: bool, bound: Duration) -> Result<Ended, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(bound, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| "no connection within the bound".to_owned())?
        .map_err(|error| format!("connect: {error}"))?;
    let request: &[u8] = match in_headers {
        true => b"POST /api/v1/auth/login HTTP/1.1\r\nHost: tollgate\r\nContent-Type: app",
        false => {
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: tollgate\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        }
    };
    stream
        .write_all(request)
        .await
        .map_err(|error| format!("write: {error}"))?;
    let mut answer = Vec::new();
    match tokio::time::timeout(bound, stream.read_to_end(&mut answer)).await {
        Err(_) => Err("the server kept the connection open".to_owned()),
        Ok(Err(_)) if answer.is_empty() => Ok(Ended::Closed),
        Ok(_) if answer.is_empty() => Ok(Ended::Closed),
        Ok(_) => {
            let text = String::from_utf8_lossy(&answer);
            let status = text
                .strip_prefix("HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| format!("not an HTTP answer: {text}"))?;
            Ok(Ended::Answered(status))
        }
    }
}

/// One plain request, `GET /api/v1/health`; its status, within `bound`.
async fn health_status(address: &str, bound: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder().timeout(bound).build().unwrap();
    client
        .get(format!("http://{address}/api/v1/health"))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|error| format!("{error:?}"))
}

/// Stalled clients to open: a thousand, or as many as this process's own open files allow
/// beside what it needs.
fn stalled_clients() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok())
        .unwrap_or(1024);
    1000.min(open_files.saturating_sub(200))
}

/// Opens `count` stalled clients (half stalling in their headers, half in their body) while
/// the server runs with short timeouts, then sends one plain request; returns the plain
/// request's status and how each stalled connection ended, all within a bound.
async fn stalled_and_one_plain(address: &str, count: usize) -> (Result<u16, String>, Vec<Ended>) {
    const BOUND: Duration = Duration::from_secs(60);
    let stalled: Vec<_> = (0..count)
        .map(|index| {
            let address = address.to_owned();
            tokio::spawn(async move { stall(&address, index % 2 == 0, BOUND).await })
        })
        .collect();
    let plain = health_status(address, BOUND).await;
    let mut ended = Vec::new();
    for client in stalled {
        match client.await.unwrap() {
            Ok(end) => ended.push(end),
            Err(problem) => panic!("a stalled client: {problem}"),
        }
    }
    (plain, ended)
}

/// Timeouts short enough for a test: a stalled client is dropped within half a second.
const SHORT_TIMEOUTS: [&str; 4] = ["--header-read-timeout", "0.5", "--body-read-timeout", "0.5"];

/// The lines in which the server says it could not accept connections.
fn accept_failures(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("cannot accept connections"))
        .count()
}

#[tokio::test]
async fn stalled_clients_past_the_open_files_limit_are_dropped_and_others_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stalled.db");
    // Far fewer descriptors than stalled clients, and the default connection cap above them:
    // the server runs out of descriptors.
    let launch = Launch {
        args: &SHORT_TIMEOUTS,
        open_files: Some(256),
    };
    let (mut served, address) = Served::start(&db, dir.path().join("server.log"), launch).await;
    let count = stalled_clients();

    let (plain, ended) = stalled_and_one_plain(&address, count).await;

    assert_eq!(plain, Ok(200), "log:\n{}", served.log());
    let in_body = ended.iter().skip(1).step_by(2);
    assert!(
        in_body
            .clone()
            .all(|end| *end == Ended::Answered(408) || *end == Ended::Closed),
        "{ended:?}"
    );
    assert!(in_body.clone().any(|end| *end == Ended::Answered(408)));
    assert!(
        ended
            .iter()
            .step_by(2)
            .all(|end| *end != Ended::Answered(200))
    );
    let log = served.log();
    let failures = accept_failures(&log);
    // Out of descriptors, a spinning accept loop logged a line on every try; this one pauses
    // and says so once per ten seconds.
    assert!(
        failures >= 1,
        "the server never ran out of descriptors:\n{log}"
    );
    assert!(
        failures <= 10,
        "{failures} lines of accept failures:\n{log}"
    );
    assert_eq!(served.terminate(), Some(0), "log:\n{}", served.log());
}

#[tokio::test]
async fn the_connection_cap_keeps_the_server_within_its_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped.db");
    let mut args = SHORT_TIMEOUTS.to_vec();
    args.extend(["--max-connections", "100"]);
    let launch = Launch {
        args: &args,
        open_files: Some(256),
    };
    let (mut served, address) = Served::start(&db, dir.path().join("server.log"), launch).await;
    let count = stalled_clients();

    let (plain, ended) = stalled_and_one_plain(&address, count).await;

    assert_eq!(plain, Ok(200), "log:\n{}", served.log());
    assert_eq!(ended.len(), count);
    let log = served.log();
    assert_eq!(accept_failures(&log), 0, "log:\n{log}");
    assert_eq!(served.terminate(), Some(0), "log:\n{}", served.log());
}
