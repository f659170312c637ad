//! A ComfyUI test double that replays recorded runs from `testdata/comfyui/*.json`.
//!
//! It serves the recorded routes, status codes and bodies, and sends the recorded WebSocket
//! messages in recorded order, driven by what the client does, never by the clock:
//! - `POST /prompt` answers as the recording of that workflow did (it must equal one of the
//!   double's runs); an accepted prompt runs at once if nothing runs, else it waits in the
//!   queue behind what does, as ComfyUI's one prompt worker takes them (in order of arrival);
//! - a running prompt's messages are released right after the response, up to the point
//!   where the recording sent `POST /interrupt` (targeted at the prompt or global), if it
//!   did; when its last message is out it has finished, and the next waiting prompt starts;
//! - `POST /interrupt` for the running prompt (or global) releases the rest, so an
//!   interrupt "lands" at the next recorded event, as late as ComfyUI landed it; one aimed
//!   at a prompt that is not running is ignored ("is not currently running, skipping
//!   interrupt"), as `queue-ops.json` and ComfyUI's logs show;
//! - `GET /queue` lists the running and the waiting prompts (`[number, prompt_id, prompt,
//!   extra_data, outputs]`), `POST /queue {"delete": [ids]}` removes waiting ones (a removed
//!   prompt never runs and never gets a history entry) and `{"clear": true}` all of them;
//! - `GET /history/{id}` is `{}` until the prompt finished (and for as many polls as the
//!   recording answered `{}`), then the recorded entry;
//! - messages follow ComfyUI's delivery rules: to the socket of the prompt's `client_id`,
//!   or, without one, only the broadcast types, to every socket;
//! - `GET /view` serves a PNG of the recorded size, dimensions and first pixel;
//! - `Faults` close the socket, refuse it, hold the first prompt after its first messages,
//!   or lose interrupts.
//!
//! The recorded prompt and client ids are replaced by the ones the client chose, and the
//! placeholders the recordings put for the host's absolute paths by real-looking paths.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Where the recorded ComfyUI lived: the recordings replaced these absolute paths by
/// placeholders, which the double puts back as a GPU host would show them.
pub const COMFYUI_ROOT: &str = "/home/comfy/ComfyUI";
pub const SITE_PACKAGES: &str = "/home/comfy/ComfyUI/.venv/lib/python3.11/site-packages";

pub fn scenario(name: &str) -> Vec<Value> {
    let path = format!("{}/../testdata/comfyui/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("<COMFYUI_ROOT>", COMFYUI_ROOT)
        .replace("<SITE_PACKAGES>", SITE_PACKAGES);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_http(e: &Value, method: &str, path_prefix: &str) -> bool {
    e["kind"] == "http"
        && e["request"]["method"] == method
        && e["request"]["path"]
            .as_str()
            .is_some_and(|p| p.strip_prefix("/api").unwrap_or(p).starts_with(path_prefix))
}

/// Broadcast types: what a socket gets from a prompt submitted without `client_id`.
const BROADCAST: [&str; 4] = [
    "status",
    "progress_state",
    "progress",
    "execution_interrupted",
];

/// One recorded `POST /prompt` and what followed it.
#[derive(Debug, Clone)]
pub struct Run {
    pub workflow: Value,
    pub status: u16,
    pub body: Value,
    recorded_prompt_id: Option<String>,
    recorded_client_id: Option<String>,
    /// (frame, held until an interrupt).
    messages: Vec<(Frame, bool)>,
    history: Option<Value>,
    empty_history_polls: usize,
}

impl Run {
    /// The `index`-th `POST /prompt` of the scenario file `name`.
    pub fn load(name: &str, index: usize) -> Run {
        let events = scenario(name);
        let posts: Vec<usize> = (0..events.len())
            .filter(|&i| is_http(&events[i], "POST", "/prompt"))
            .collect();
        let at = posts[index];
        let end = posts.get(index + 1).copied().unwrap_or(events.len());
        let post = &events[at];
        let workflow = post["request"]["body"]["prompt"].clone();
        let recorded_client_id = post["request"]["body"]["client_id"]
            .as_str()
            .map(String::from);
        let status = post["response"]["status"].as_u64().unwrap() as u16;
        let body = post["response"]["body"].clone();
        let recorded_prompt_id = body["prompt_id"].as_str().map(String::from);
        let window = &events[at + 1..end];

        // The socket the recording watched this prompt on.
        let conn = match &recorded_client_id {
            Some(c) => events
                .iter()
                .find(|e| {
                    e["event"] == "open"
                        && e["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with(&format!("clientId={c}")))
                })
                .map(|e| e["conn"].clone()),
            None => window
                .iter()
                .find(|e| e["kind"] == "ws" && e["event"] == "message")
                .map(|e| e["conn"].clone()),
        };
        let pid = recorded_prompt_id.clone().unwrap_or_default();
        let interrupt_at = window
            .iter()
            .filter(|e| {
                is_http(e, "POST", "/interrupt")
                    && (e["request"]["body"].is_null()
                        || e["request"]["body"]["prompt_id"].as_str() == Some(&pid))
            })
            .map(|e| e["t_ms"].as_f64().unwrap())
            .next_back();
        let mut messages = Vec::new();
        if status == 200 {
            for e in window {
                if e["kind"] != "ws" || e["event"] != "message" {
                    continue;
                }
                if Some(&e["conn"]) != conn.as_ref() {
                    continue;
                }
                let held = interrupt_at.is_some_and(|t| e["t_ms"].as_f64().unwrap() > t);
                let b = &e["binary"];
                if e["frame"] == "binary" {
                    // Type 1 PREVIEW_IMAGE (PNG): what a client that did not negotiate
                    // preview metadata gets.
                    if b["event_type"] == 1 && b["image"]["png"] == true {
                        let image = ImageSummary {
                            bytes: b["image_bytes"].as_u64().map(|n| n as usize),
                            width: b["image"]["width"].as_u64().unwrap() as u32,
                            height: b["image"]["height"].as_u64().unwrap() as u32,
                            first_pixel: [0x80, 0x80, 0x80],
                        };
                        messages.push((Frame::Preview(image), held));
                    }
                    continue;
                }
                let m = &e["message"];
                match m["data"]["prompt_id"].as_str() {
                    Some(p) if p != pid => continue,
                    _ => {}
                }
                messages.push((Frame::Text(m.clone()), held));
                if m["type"] == "executing"
                    && m["data"]["node"].is_null()
                    && m["data"]["prompt_id"] == pid
                {
                    break;
                }
            }
        }
        // Reads of this prompt's history can come after later prompts (cached.json).
        let history_gets: Vec<&Value> = events[at + 1..]
            .iter()
            .filter(|e| is_http(e, "GET", &format!("/history/{pid}")) && !pid.is_empty())
            .collect();
        let history = history_gets
            .iter()
            .rev()
            .find(|e| e["response"]["body"].get(&pid).is_some())
            .map(|e| e["response"]["body"].clone());
        let empty_history_polls = history_gets
            .iter()
            .filter(|e| e["response"]["body"] == json!({}))
            .count();
        Run {
            workflow,
            status,
            body,
            recorded_prompt_id,
            recorded_client_id,
            messages,
            history,
            empty_history_polls,
        }
    }

    pub fn message_types(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|(f, _)| match f {
                Frame::Text(m) => m["type"].as_str().unwrap_or_default().to_string(),
                Frame::Preview(_) => "PREVIEW_IMAGE".to_string(),
            })
            .collect()
    }
}

/// One recorded WebSocket frame of a run.
#[derive(Debug, Clone)]
enum Frame {
    Text(Value),
    /// A binary PREVIEW_IMAGE frame (type 1, format 2 = PNG) carrying this image.
    Preview(ImageSummary),
}

/// What a `/view` file looks like, from a recorded `_summary`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub bytes: Option<usize>,
    pub width: u32,
    pub height: u32,
    pub first_pixel: [u8; 3],
}

/// All recorded `GET /view` 200 answers of a scenario: (filename, subfolder, type) → image.
pub fn recorded_views(name: &str) -> HashMap<(String, String, String), ImageSummary> {
    let mut out = HashMap::new();
    for e in scenario(name) {
        if !is_http(&e, "GET", "/view") || e["response"]["status"] != 200 {
            continue;
        }
        let s = &e["response"]["body"]["_summary"];
        if s["png"] != true {
            continue;
        }
        let path = e["request"]["path"].as_str().unwrap();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let q = parse_query(query);
        let get = |k: &str, d: &str| q.get(k).cloned().unwrap_or_else(|| d.to_string());
        let px: Vec<u8> = s["first_pixel"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0) as u8).collect())
            .unwrap_or_default();
        out.insert(
            (
                get("filename", ""),
                get("subfolder", ""),
                get("type", "output"),
            ),
            ImageSummary {
                bytes: s["bytes"].as_u64().map(|b| b as usize),
                width: s["width"].as_u64().unwrap() as u32,
                height: s["height"].as_u64().unwrap() as u32,
                first_pixel: [px[0], px[1], px[2]],
            },
        );
    }
    out
}

/// Recorded `GET /system_stats` answer.
pub fn recorded_system_stats() -> Value {
    scenario("system-stats.json")
        .into_iter()
        .find(|e| e["kind"] == "http" && e["request"]["path"] == "/system_stats")
        .map(|e| e["response"]["body"].clone())
        .expect("system-stats.json records GET /system_stats")
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PNG of `s.width` x `s.height` filled with `s.first_pixel`, padded with a `prompt`
/// tEXt chunk (as ComfyUI embeds) to exactly the recorded byte size.
pub fn render_png(s: &ImageSummary) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut row = vec![0u8]; // filter type: none
    for _ in 0..s.width {
        row.extend_from_slice(&s.first_pixel);
    }
    let raw = row.repeat(s.height as usize);
    let idat = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 9);
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&s.width.to_be_bytes());
    ihdr.extend_from_slice(&s.height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let fixed = 8 + (12 + 13) + (12 + idat.len()) + 12;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    if let Some(total) = s.bytes
        && total >= fixed + 12 + 7
    {
        let mut text = b"prompt\0".to_vec();
        text.resize(total - fixed - 12, b' ');
        chunk(&mut out, b"tEXt", &text);
    }
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Width and height from a PNG's IHDR.
pub fn png_dimensions(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (w, h)
}

/// Knobs for fault tests.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close the prompt's socket after this many of the run's messages.
    pub drop_ws_after: Option<usize>,
    /// Answer `/ws` with 404 (no WebSocket at all).
    pub refuse_ws: bool,
    /// Hold the first prompt's messages from this one on until an interrupt, as a long
    /// node would: the prompt stays running for as long as the test needs.
    pub hold_after: Option<usize>,
    /// Lose this many interrupts aimed at the running prompt, as ComfyUI loses one that
    /// arrives after it took the prompt from its queue and before execution started
    /// (starting clears the interrupt flag).
    pub interrupts_lost: usize,
    /// Another client's prompt of this run starts just before the first prompt arrives,
    /// so that one waits in the queue behind it.
    pub busy_with: Option<Run>,
}

/// A request the double received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// When the request had been read (for latency measurements).
    #[allow(dead_code)]
    pub at: std::time::Instant,
}

enum Cmd {
    Text(String),
    Binary(Arc<Vec<u8>>),
    Close,
}

/// One accepted prompt.
#[derive(Clone)]
struct Prompt {
    /// Index of its run in the double's runs.
    run: usize,
    prompt_id: String,
    client_id: Option<String>,
    number: u64,
    workflow: Value,
    hold_after: Option<usize>,
    next: usize,
    delivered: usize,
    empty_polls_left: usize,
}

impl Prompt {
    /// As `GET /queue` lists it: `[number, prompt_id, prompt, extra_data, outputs]`.
    fn queue_item(&self) -> Value {
        json!([self.number, self.prompt_id, self.workflow, {"client_id": self.client_id}, []])
    }
}

struct State {
    runs: Vec<Run>,
    faults: Faults,
    views: HashMap<(String, String, String), ImageSummary>,
    system_stats: Value,
    sockets: Vec<(String, mpsc::UnboundedSender<Cmd>)>,
    /// Rendered preview frames, by (width, height, bytes).
    previews: HashMap<(u32, u32, Option<usize>), Arc<Vec<u8>>>,
    running: Option<Prompt>,
    pending: VecDeque<Prompt>,
    finished: HashMap<String, Prompt>,
    accepted: u64,
    interrupts_lost: usize,
    seen: Vec<Seen>,
}

impl State {
    fn substitute(&self, prompt: &Prompt, text: String) -> String {
        let run = &self.runs[prompt.run];
        let mut text = text;
        if let Some(p) = &run.recorded_prompt_id {
            text = text.replace(p.as_str(), &prompt.prompt_id);
        }
        if let (Some(rc), Some(c)) = (&run.recorded_client_id, &prompt.client_id) {
            text = text.replace(rc.as_str(), c);
        }
        text
    }

    /// Sends the running prompt's messages up to the next held one (or all, once
    /// interrupted); a prompt whose last message is out has finished, and the next waiting
    /// one starts.
    fn release(&mut self, interrupted: bool) {
        let mut interrupted = interrupted;
        loop {
            let Some(p) = &self.running else { return };
            let Some((msg, held)) = self.runs[p.run].messages.get(p.next).cloned() else {
                let done = self.running.take().expect("a running prompt");
                self.finished.insert(done.prompt_id.clone(), done);
                self.running = self.pending.pop_front();
                interrupted = false;
                continue;
            };
            let held = held || p.hold_after.is_some_and(|n| p.next >= n);
            if held && !interrupted {
                return;
            }
            let prompt = p.clone();
            if let Some(p) = self.running.as_mut() {
                p.next += 1;
            }
            let (kind, cmd) = match &msg {
                Frame::Text(m) => (
                    m["type"].as_str().unwrap_or_default().to_string(),
                    Cmd::Text(self.substitute(&prompt, m.to_string())),
                ),
                Frame::Preview(image) => {
                    let key = (image.width, image.height, image.bytes);
                    let frame = self
                        .previews
                        .entry(key)
                        .or_insert_with(|| {
                            let mut f = vec![0, 0, 0, 1, 0, 0, 0, 2];
                            f.extend(render_png(image));
                            Arc::new(f)
                        })
                        .clone();
                    ("progress".to_string(), Cmd::Binary(frame))
                }
            };
            let targets: Vec<mpsc::UnboundedSender<Cmd>> = match &prompt.client_id {
                Some(c) => self
                    .sockets
                    .iter()
                    .filter(|(id, _)| id == c)
                    .map(|(_, tx)| tx.clone())
                    .collect(),
                None if BROADCAST.contains(&kind.as_str()) => {
                    self.sockets.iter().map(|(_, tx)| tx.clone()).collect()
                }
                None => Vec::new(),
            };
            if self
                .faults
                .drop_ws_after
                .is_some_and(|n| prompt.delivered >= n)
            {
                // The socket went away: the server sends to nobody.
                for tx in &targets {
                    let _ = tx.send(Cmd::Close);
                }
                let closed: Vec<_> = targets.iter().collect();
                self.sockets
                    .retain(|(_, tx)| !closed.iter().any(|c| c.same_channel(tx)));
                continue;
            }
            for tx in &targets {
                let _ = tx.send(match &cmd {
                    Cmd::Text(t) => Cmd::Text(t.clone()),
                    Cmd::Binary(b) => Cmd::Binary(b.clone()),
                    Cmd::Close => Cmd::Close,
                });
            }
            if let Some(p) = self.running.as_mut() {
                p.delivered += 1;
            }
        }
    }

    /// `POST /prompt`: the status and body to answer, and whether the prompt runs now.
    fn accept(&mut self, body: &Value) -> (u16, String, bool) {
        if let Some(run) = self.faults.busy_with.take() {
            self.runs.push(run);
            let other = self.runs.len() - 1;
            let workflow = self.runs[other].workflow.clone();
            let prompt_id = "someone-else".to_string();
            self.accept(&json!({ "prompt": workflow, "prompt_id": prompt_id }));
            self.release(false);
        }
        let Some(run) = self.runs.iter().position(|r| body["prompt"] == r.workflow) else {
            return (
                500,
                "\"double: workflow differs from the recordings\"".to_string(),
                false,
            );
        };
        let recorded = &self.runs[run];
        if recorded.status != 200 {
            return (recorded.status, recorded.body.to_string(), false);
        }
        let prompt = Prompt {
            run,
            prompt_id: body["prompt_id"]
                .as_str()
                .map(String::from)
                .or_else(|| recorded.recorded_prompt_id.clone())
                .unwrap_or_default(),
            client_id: body["client_id"].as_str().map(String::from),
            number: self.accepted,
            workflow: body["prompt"].clone(),
            hold_after: if self.accepted == 0 {
                self.faults.hold_after
            } else {
                None
            },
            next: 0,
            delivered: 0,
            empty_polls_left: recorded.empty_history_polls,
        };
        self.accepted += 1;
        let answer = self.substitute(&prompt, recorded.body.to_string());
        let runs_now = self.running.is_none();
        if runs_now {
            self.running = Some(prompt);
        } else {
            self.pending.push_back(prompt);
        }
        (200, answer, runs_now)
    }

    /// `POST /interrupt`, targeted at `prompt_id` or global.
    fn interrupt(&mut self, prompt_id: Option<&str>) {
        let Some(running) = &self.running else { return };
        if prompt_id.is_some_and(|id| id != running.prompt_id) {
            return;
        }
        if self.interrupts_lost > 0 {
            self.interrupts_lost -= 1;
            return;
        }
        self.release(true);
    }

    /// `GET /history/{id}`.
    fn history(&mut self, id: &str) -> String {
        let Some(prompt) = self.finished.get_mut(id) else {
            return "{}".to_string();
        };
        let Some(history) = self.runs[prompt.run].history.clone() else {
            return "{}".to_string();
        };
        if prompt.empty_polls_left > 0 {
            prompt.empty_polls_left -= 1;
            return "{}".to_string();
        }
        let prompt = prompt.clone();
        self.substitute(&prompt, history.to_string())
    }
}

/// The double: serves on 127.0.0.1:0 until dropped.
pub struct ComfyDouble {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl ComfyDouble {
    /// Replays `run`; `/view` serves the recorded images of `views_from` plus `extra`.
    pub async fn start(run: Run, views_from: &str, faults: Faults) -> ComfyDouble {
        Self::with_runs(vec![run], views_from, faults).await
    }

    /// Replays whichever of `runs` a prompt's workflow is.
    pub async fn with_runs(runs: Vec<Run>, views_from: &str, faults: Faults) -> ComfyDouble {
        let state = Arc::new(Mutex::new(State {
            runs,
            interrupts_lost: faults.interrupts_lost,
            faults,
            views: recorded_views(views_from),
            system_stats: recorded_system_stats(),
            sockets: Vec::new(),
            previews: HashMap::new(),
            running: None,
            pending: VecDeque::new(),
            finished: HashMap::new(),
            accepted: 0,
            seen: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve(stream, st.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        ComfyDouble {
            addr,
            state,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_view(&self, filename: &str, subfolder: &str, image: ImageSummary) {
        self.state
            .lock()
            .unwrap()
            .views
            .insert((filename.into(), subfolder.into(), "output".into()), image);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The prompt ids running and waiting, as `GET /queue` would list them.
    #[allow(dead_code)]
    pub fn queue(&self) -> (Option<String>, Vec<String>) {
        let st = self.state.lock().unwrap();
        (
            st.running.as_ref().map(|p| p.prompt_id.clone()),
            st.pending.iter().map(|p| p.prompt_id.clone()).collect(),
        )
    }

    /// How many `POST /prompt` requests the double received.
    #[allow(dead_code)]
    pub fn prompts_posted(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == "POST" && s.path.trim_start_matches("/api") == "/prompt")
            .count()
    }
}

impl Drop for ComfyDouble {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_response(status: u16, body: &str) -> Vec<u8> {
    http_response(status, "application/json; charset=utf-8", body.as_bytes())
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let path = path.strip_prefix("/api").unwrap_or(path).to_string();
    let query = parse_query(query);
    state.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        path: target.clone(),
        body: body.clone(),
        at: std::time::Instant::now(),
    });

    if path == "/ws" {
        return websocket(stream, &headers, query.get("clientId").cloned(), state).await;
    }

    // After the response is written, a prompt that runs at once starts.
    let mut start_after = false;
    let response = {
        let mut st = state.lock().unwrap();
        match (method.as_str(), path.as_str()) {
            ("GET", "/system_stats") => json_response(200, &st.system_stats.to_string()),
            ("POST", "/prompt") => {
                let (status, answer, runs_now) = st.accept(&body);
                start_after = runs_now;
                json_response(status, &answer)
            }
            ("POST", "/interrupt") => {
                // Landed (or not) before the answer: what the client asks next sees it.
                st.interrupt(body["prompt_id"].as_str());
                http_response(200, "text/plain", b"")
            }
            ("GET", "/queue") => {
                let running: Vec<Value> = st.running.iter().map(Prompt::queue_item).collect();
                let pending: Vec<Value> = st.pending.iter().map(Prompt::queue_item).collect();
                json_response(
                    200,
                    &json!({"queue_running": running, "queue_pending": pending}).to_string(),
                )
            }
            ("POST", "/queue") => {
                if body["clear"] == true {
                    st.pending.clear();
                }
                for id in body["delete"].as_array().into_iter().flatten() {
                    // ComfyUI removes the first waiting match only.
                    if let Some(at) = st.pending.iter().position(|p| *id == p.prompt_id.as_str()) {
                        st.pending.remove(at);
                    }
                }
                http_response(200, "text/plain", b"")
            }
            ("GET", p) if p.starts_with("/history/") => {
                let answer = st.history(&p["/history/".len()..]);
                json_response(200, &answer)
            }
            ("GET", "/view") => {
                let key = (
                    query.get("filename").cloned().unwrap_or_default(),
                    query.get("subfolder").cloned().unwrap_or_default(),
                    query
                        .get("type")
                        .cloned()
                        .unwrap_or_else(|| "output".into()),
                );
                match st.views.get(&key) {
                    Some(img) => http_response(200, "image/png", &render_png(img)),
                    None => http_response(404, "text/plain", b""),
                }
            }
            _ => http_response(404, "text/plain", b"404: Not Found"),
        }
    };
    if stream.write_all(&response).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    if start_after {
        state.lock().unwrap().release(false);
    }
}

async fn websocket(
    mut stream: TcpStream,
    headers: &HashMap<String, String>,
    client_id: Option<String>,
    state: Arc<Mutex<State>>,
) {
    if state.lock().unwrap().faults.refuse_ws {
        let _ = stream
            .write_all(&http_response(404, "text/plain", b"404: Not Found"))
            .await;
        return;
    }
    let Some(key) = headers.get("sec-websocket-key") else {
        return;
    };
    let accept = derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    let (mut sink, mut incoming) = ws.split();
    let sid = client_id.unwrap_or_else(|| "double-sid".into());
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut st = state.lock().unwrap();
        // Registered before the first status goes out: a client that waits for it can
        // submit knowing its messages will be delivered.
        st.sockets.push((sid.clone(), tx.clone()));
        let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}});
        let _ = tx.send(Cmd::Text(hello.to_string()));
    }
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Text(t)) => {
                    if sink.send(Message::text(t)).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Binary(b)) => {
                    if sink.send(Message::binary(b.to_vec())).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Close) | None => {
                    let _ = sink.close().await;
                    break;
                }
            },
            msg = incoming.next() => match msg {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    state
        .lock()
        .unwrap()
        .sockets
        .retain(|(_, t)| !t.same_channel(&tx));
}
