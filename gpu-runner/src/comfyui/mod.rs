//! Client for one local ComfyUI server (shapes as recorded from ComfyUI 0.8, see
//! `testdata/comfyui/README.md`): `/system_stats`, `/prompt`, `/queue`, `/history/{id}`,
//! `/interrupt`, `/view` and the `/ws` event stream.

mod events;

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

pub use events::WsEvent;

/// Why a call to ComfyUI did not give an answer the runner can use.
#[derive(Debug)]
pub enum ComfyError {
    /// No answer: connection refused or reset, timeout, or a 5xx. The server is not usable.
    Unavailable(String),
    /// An answer in a shape the runner does not understand.
    Protocol(String),
}

impl std::fmt::Display for ComfyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComfyError::Unavailable(m) => write!(f, "ComfyUI unavailable: {m}"),
            ComfyError::Protocol(m) => write!(f, "unexpected answer from ComfyUI: {m}"),
        }
    }
}

impl std::error::Error for ComfyError {}

fn unavailable(e: reqwest::Error) -> ComfyError {
    ComfyError::Unavailable(e.to_string())
}

/// `GET /system_stats`.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemStats {
    pub system: SystemInfo,
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SystemInfo {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub comfyui_version: String,
    #[serde(default)]
    pub python_version: String,
    #[serde(default)]
    pub pytorch_version: String,
    #[serde(default)]
    pub ram_total: u64,
    #[serde(default)]
    pub ram_free: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub index: Option<u64>,
    pub vram_total: u64,
    pub vram_free: u64,
}

impl SystemStats {
    /// VRAM in use on the instance's first device (one ComfyUI per GPU), if it reports one.
    pub fn vram_used(&self) -> Option<u64> {
        self.devices
            .first()
            .map(|d| d.vram_total.saturating_sub(d.vram_free))
    }

    /// Free VRAM on the first device: what the claim can promise a job.
    pub fn vram_free(&self) -> Option<u64> {
        self.devices.first().map(|d| d.vram_free)
    }
}

/// Answer to `POST /prompt`.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// 200: queued. `node_errors` can be non-empty: invalid output branches are skipped.
    Accepted { number: f64, node_errors: Value },
    /// 400: nothing was queued. `error` is `{type,message,details,extra_info}`;
    /// `node_errors` is `{node_id: {errors, dependent_outputs, class_type}}` (may be empty).
    Rejected { error: Value, node_errors: Value },
}

/// `GET /queue`: the prompt ids ComfyUI is running and those waiting behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub running: Vec<String>,
    pub pending: Vec<String>,
}

/// Where a prompt is in ComfyUI's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Running,
    Pending,
    /// Neither: finished (its history says how) or deleted from the queue before it ran.
    Absent,
}

impl QueueState {
    fn parse(v: &Value) -> Result<Self, ComfyError> {
        // Items are `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
        let ids = |key: &str| -> Result<Vec<String>, ComfyError> {
            let items = v
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| ComfyError::Protocol(format!("GET /queue: no {key}")))?;
            items
                .iter()
                .map(|item| {
                    item.get(1)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ComfyError::Protocol(format!(
                                "GET /queue: an item without a prompt id in {key}"
                            ))
                        })
                })
                .collect()
        };
        Ok(QueueState {
            running: ids("queue_running")?,
            pending: ids("queue_pending")?,
        })
    }

    pub fn place(&self, prompt_id: &str) -> Place {
        if self.running.iter().any(|p| p == prompt_id) {
            Place::Running
        } else if self.pending.iter().any(|p| p == prompt_id) {
            Place::Pending
        } else {
            Place::Absent
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.pending.is_empty()
    }
}

/// One file a node produced, as listed in history `outputs` and `executed` messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type", default = "output_type")]
    pub kind: String,
}

fn output_type() -> String {
    "output".into()
}

/// One `GET /history/{id}` entry: present only once the prompt finished.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// `status.status_str`: "success" or "error".
    pub status_str: String,
    pub completed: bool,
    /// `status.messages`: `[[event, data], ...]`.
    pub messages: Vec<(String, Value)>,
    /// `(node_id, file)` for every file listed under `outputs`, in node order.
    pub files: Vec<(String, FileRef)>,
}

impl HistoryEntry {
    fn parse(v: &Value) -> Result<Self, ComfyError> {
        let status = v
            .get("status")
            .ok_or_else(|| ComfyError::Protocol("history entry without status".into()))?;
        let status_str = status
            .get("status_str")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let completed = status
            .get("completed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let messages = status
            .get("messages")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|m| {
                        let name = m.get(0)?.as_str()?.to_string();
                        Some((name, m.get(1).cloned().unwrap_or(Value::Null)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut files = Vec::new();
        if let Some(outputs) = v.get("outputs").and_then(Value::as_object) {
            let mut nodes: Vec<(&String, &Value)> = outputs.iter().collect();
            nodes.sort_by(|a, b| node_order(a.0, b.0));
            for (node, out) in nodes {
                // "images", "gifs", "audio", ...: every list of {filename, subfolder, type}.
                for list in out.as_object().into_iter().flat_map(Map::values) {
                    for item in list.as_array().into_iter().flatten() {
                        if let Ok(f) = serde_json::from_value::<FileRef>(item.clone()) {
                            files.push((node.clone(), f));
                        }
                    }
                }
            }
        }
        Ok(HistoryEntry {
            status_str,
            completed,
            messages,
            files,
        })
    }

    /// Data of the first status message named `name` (e.g. "execution_error").
    pub fn message(&self, name: &str) -> Option<&Value> {
        self.messages
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }

    /// Server-side execution time in seconds: `execution_start` to the final
    /// success/error/interrupted message, from the timestamps ComfyUI recorded.
    pub fn execution_seconds(&self) -> Option<f64> {
        let ts = |d: &Value| d.get("timestamp").and_then(Value::as_f64);
        let start = ts(self.message("execution_start")?)?;
        let end = [
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ]
        .iter()
        .find_map(|n| self.message(n).and_then(ts))?;
        Some(((end - start) / 1000.0).max(0.0))
    }
}

/// Numeric node ids in numeric order, others after, by text.
fn node_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// An open `/ws?clientId=...` connection.
pub struct EventStream {
    inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl EventStream {
    /// The next JSON event; binary preview frames are skipped. `None` when the socket closed
    /// or failed (the caller then polls history).
    pub async fn next(&mut self) -> Option<WsEvent> {
        loop {
            match self.inner.next().await? {
                Ok(Message::Text(text)) => return Some(WsEvent::parse(text.as_str())),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }
}

/// Client for one ComfyUI server, e.g. `http://127.0.0.1:8188`.
#[derive(Clone)]
pub struct ComfyClient {
    base: String,
    http: reqwest::Client,
    request_timeout: Duration,
}

impl ComfyClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_timeouts(base_url, Duration::from_secs(5), Duration::from_secs(60))
    }

    /// `connect_timeout` bounds reaching the server; `request_timeout` bounds one request
    /// (a `/view` of a large video included).
    pub fn with_timeouts(
        base_url: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .expect("reqwest client without TLS builds");
        ComfyClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            request_timeout,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn get_json(&self, path: &str) -> Result<Value, ComfyError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(ComfyError::Unavailable(format!("GET {path}: {status}")));
        }
        if !status.is_success() {
            return Err(ComfyError::Protocol(format!("GET {path}: {status}")));
        }
        resp.json()
            .await
            .map_err(|e| ComfyError::Protocol(format!("GET {path}: {e}")))
    }

    /// `GET /system_stats`: health, version, devices and VRAM.
    pub async fn system_stats(&self) -> Result<SystemStats, ComfyError> {
        let v = self.get_json("/system_stats").await?;
        serde_json::from_value(v).map_err(|e| ComfyError::Protocol(format!("/system_stats: {e}")))
    }

    /// `POST /prompt` with a client-chosen `prompt_id`; `client_id` routes the prompt's
    /// events to the WebSocket opened with that id (without it, only broadcasts arrive).
    pub async fn submit(
        &self,
        workflow: &Value,
        prompt_id: &str,
        client_id: Option<&str>,
    ) -> Result<Submitted, ComfyError> {
        let mut body = json!({ "prompt": workflow, "prompt_id": prompt_id });
        if let Some(c) = client_id {
            body["client_id"] = json!(c);
        }
        let resp = self
            .http
            .post(format!("{}/prompt", self.base))
            .timeout(self.request_timeout)
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(ComfyError::Unavailable(format!("POST /prompt: {status}")));
        }
        let text = resp.text().await.map_err(unavailable)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| ComfyError::Protocol(format!("POST /prompt: {status}: {text:.200}")))?;
        let node_errors = v.get("node_errors").cloned().unwrap_or_else(|| json!({}));
        match status.as_u16() {
            200 => Ok(Submitted::Accepted {
                number: v.get("number").and_then(Value::as_f64).unwrap_or(0.0),
                node_errors,
            }),
            400 => Ok(Submitted::Rejected {
                error: v.get("error").cloned().unwrap_or(Value::Null),
                node_errors,
            }),
            _ => Err(ComfyError::Protocol(format!(
                "POST /prompt: {status}: {text:.200}"
            ))),
        }
    }

    /// `GET /history/{id}`: `None` while unknown or still running (`{}`).
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let v = self.get_json(&format!("/history/{prompt_id}")).await?;
        match v.get(prompt_id) {
            Some(entry) => HistoryEntry::parse(entry).map(Some),
            None => Ok(None),
        }
    }

    /// `POST /interrupt {prompt_id}`: always 200; lands at the next node start or progress
    /// tick, or not at all if the prompt finishes first. Ignored unless the prompt is
    /// running, and lost when it arrives after ComfyUI took the prompt from its queue but
    /// before execution started (starting a prompt clears the interrupt flag).
    pub async fn interrupt(&self, prompt_id: &str) -> Result<(), ComfyError> {
        self.post_control("/interrupt", &json!({ "prompt_id": prompt_id }))
            .await
    }

    /// `GET /queue`: what runs and what waits.
    pub async fn queue(&self) -> Result<QueueState, ComfyError> {
        QueueState::parse(&self.get_json("/queue").await?)
    }

    /// `POST /queue {"delete": [ids]}`: removes prompts that wait in the queue, so they never
    /// run (a running or finished prompt is left as it is). Always 200.
    pub async fn delete_pending(&self, prompt_ids: &[String]) -> Result<(), ComfyError> {
        self.post_control("/queue", &json!({ "delete": prompt_ids }))
            .await
    }

    /// A control request whose answer carries nothing but its status.
    async fn post_control(&self, path: &str, body: &Value) -> Result<(), ComfyError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(self.request_timeout)
            .json(body)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ComfyError::Unavailable(format!(
                "POST {path}: {}",
                resp.status()
            )))
        }
    }

    /// `GET /view?filename=&subfolder=&type=`: the file's bytes.
    pub async fn view(&self, file: &FileRef) -> Result<Vec<u8>, ComfyError> {
        let resp = self
            .http
            .get(format!("{}/view", self.base))
            .query(&[
                ("filename", file.filename.as_str()),
                ("subfolder", file.subfolder.as_str()),
                ("type", file.kind.as_str()),
            ])
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(ComfyError::Unavailable(format!("GET /view: {status}")));
        }
        if !status.is_success() {
            return Err(ComfyError::Protocol(format!(
                "GET /view {}/{}: {status}",
                file.subfolder, file.filename
            )));
        }
        Ok(resp.bytes().await.map_err(unavailable)?.to_vec())
    }

    /// Opens `/ws?clientId=...` and waits for the server's first `status` message, so the
    /// socket is registered before anything is submitted for this client id.
    pub async fn connect(&self, client_id: &str) -> Result<EventStream, ComfyError> {
        let ws_base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(ComfyError::Protocol(format!(
                "not an http URL: {}",
                self.base
            )));
        };
        let url = format!("{ws_base}/ws?clientId={client_id}");
        let (inner, _) = tokio::time::timeout(
            self.request_timeout,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| ComfyError::Unavailable("WebSocket connect timed out".into()))?
        .map_err(|e| ComfyError::Unavailable(format!("WebSocket: {e}")))?;
        let mut stream = EventStream { inner };
        let first = tokio::time::timeout(self.request_timeout, stream.next()).await;
        match first {
            Ok(Some(WsEvent::Status { .. })) => Ok(stream),
            Ok(Some(other)) => Err(ComfyError::Protocol(format!(
                "WebSocket opened with {other:?} instead of status"
            ))),
            Ok(None) => Err(ComfyError::Unavailable("WebSocket closed on open".into())),
            Err(_) => Err(ComfyError::Unavailable(
                "no status on WebSocket open".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `GET /queue` answers ComfyUI 0.8 gave in `queue-ops.json`: A running; D, B and C
    /// waiting (in heap order), then B deleted.
    #[test]
    fn the_recorded_queue_answers_parse() {
        let recording: Value =
            serde_json::from_str(include_str!("../../../testdata/comfyui/queue-ops.json")).unwrap();
        let answers: Vec<QueueState> = recording
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "http" && e["request"]["method"] == "GET")
            .filter(|e| e["request"]["path"] == "/queue")
            .map(|e| QueueState::parse(&e["response"]["body"]).unwrap())
            .collect();
        let (a, b, c, d) = (
            "1730768d-ad2b-4cc5-a82f-5630b455439f",
            "b8819473-bd90-4370-8a76-91a4ca5f146e",
            "141f9b53-2e63-46c0-9b18-96a4f2f80fbd",
            "8a1eaf5f-1bab-4113-a787-eabf8d6a7b51",
        );
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].running, [a]);
        assert_eq!(answers[0].pending, [d, b, c]);
        assert_eq!(answers[1].pending, [d, c]);
        assert_eq!(answers[1].place(a), Place::Running);
        assert_eq!(answers[1].place(c), Place::Pending);
        assert_eq!(answers[1].place(b), Place::Absent);
        assert!(!answers[1].is_empty());
        assert!(
            QueueState::parse(&json!({ "queue_running": [], "queue_pending": [] }))
                .unwrap()
                .is_empty()
        );
        assert!(QueueState::parse(&json!({ "queue_running": [[1]] })).is_err());
    }
}
