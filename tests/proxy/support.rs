//! What both proxies' tests stand on: the two protected services (loopback servers that
//! answer with what reached them), the shipped proxy configuration with its addresses
//! replaced, the proxy as a child process, and a client that sends request targets byte for
//! byte (an HTTP library would normalise `/comfy/../llm/` before it left).

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tollgate_tests::{TestApp, loopback::LoopbackServer};

/// How long a proxy may take to start routing, and one exchange through it.
const STARTUP_BOUND: Duration = Duration::from_secs(20);
const EXCHANGE_BOUND: Duration = Duration::from_secs(10);

/// A protected service: it answers `<name> <path it got> tenant=<…> key=<…>`, naming the
/// identity headers the proxy passed on, and remembers every path it was asked for.
pub struct Backend {
    server: LoopbackServer,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    async fn start(name: &'static str) -> Self {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let server = LoopbackServer::start(move |parts, _| {
            let target = parts.uri.to_string();
            log.lock().unwrap().push(target.clone());
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                    .unwrap_or_default()
            };
            let body = format!(
                "{name} {target} tenant={} key={}",
                header("x-tollgate-tenant-id"),
                header("x-tollgate-api-key-id")
            );
            Response::new(Full::new(Bytes::from(body)))
        })
        .await;
        Self { server, seen }
    }

    /// The paths (with queries) this service was asked for, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Where the proxy sends what it lets through.
pub struct Upstreams {
    pub tollgate: SocketAddr,
    pub comfyui: SocketAddr,
    pub llm: SocketAddr,
}

/// A proxy running as a child process, with its scratch directory; dropping it kills it.
pub struct RunningProxy {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RunningProxy {
    /// Spawns `command` (its output going to a log in `dir`) to listen on `port`.
    pub fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir) -> Self {
        let log = dir.path().join("proxy.log");
        let output = File::create(&log).expect("the proxy's log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("the log file, twice"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("{command:?} could not be started: {error}"));
        Self {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits, bounded, until the proxy routes `/api/v1/health` to Tollgate.
    pub async fn wait_until_routing(&mut self) {
        let deadline = Instant::now() + STARTUP_BOUND;
        loop {
            if let Ok(reply) = exchange(self.port, "GET", b"/api/v1/health", &[], None).await
                && reply.status == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("the proxy's status") {
                panic!("the proxy exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not route /api/v1/health to Tollgate within {STARTUP_BOUND:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tollgate, the two services, and a proxy in front of them.
pub struct Stack {
    pub app: TestApp,
    pub comfyui: Backend,
    pub llm: Backend,
    pub proxy: RunningProxy,
}

impl Stack {
    /// Starts the services and the proxy `start` makes, and waits, bounded, until the proxy
    /// routes to Tollgate.
    pub async fn start(app: TestApp, start: impl FnOnce(&Upstreams) -> RunningProxy) -> Self {
        let comfyui = Backend::start("comfyui").await;
        let llm = Backend::start("llm").await;
        let upstreams = Upstreams {
            tollgate: app
                .base_url
                .trim_start_matches("http://")
                .parse()
                .expect("the server's address"),
            comfyui: comfyui.server.address,
            llm: llm.server.address,
        };
        let mut stack = Self {
            proxy: start(&upstreams),
            app,
            comfyui,
            llm,
        };
        stack.proxy.wait_until_routing().await;
        stack
    }

    /// Sends `method target` through the proxy, the target exactly as given.
    pub async fn send(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        json_body: Option<&str>,
    ) -> Reply {
        exchange(self.proxy.port, method, target, headers, json_body)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{method} {} through the proxy: {error}\n{}",
                    String::from_utf8_lossy(target),
                    self.proxy.log()
                )
            })
    }

    pub async fn get(&self, target: &[u8], headers: &[(&str, &str)]) -> Reply {
        self.send("GET", target, headers, None).await
    }
}

/// A response as it came over the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.0 exchange on a fresh connection: the server answers with a length or by
/// closing, never in chunks.
async fn exchange(
    port: u16,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> std::io::Result<Reply> {
    let mut request = Vec::new();
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.0\r\nHost: gate.test\r\n");
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let body = json_body.unwrap_or_default();
    if json_body.is_some() {
        request.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    let mut raw = Vec::new();
    tokio::time::timeout(EXCHANGE_BOUND, async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(&request).await?;
        stream.read_to_end(&mut raw).await
    })
    .await
    .map_err(|_| std::io::Error::other(format!("no answer within {EXCHANGE_BOUND:?}")))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {head:?}")))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A port that was free a moment ago: bind port 0, read the port, let it go.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A file of the repository's `deploy/` directory, as shipped.
pub fn deploy_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

/// `text` with every `from` replaced by `to`; `from` must occur, so a change to the shipped
/// file that this test no longer matches fails here rather than testing something else.
pub fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped configuration no longer contains {from:?}"
    );
    text.replace(from, to)
}
