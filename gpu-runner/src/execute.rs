//! Runs one job on one ComfyUI: health check, submit with a client-chosen prompt id,
//! follow the WebSocket (history polled as the truth and as the fallback), enforce the
//! time limit and cancellation, fetch and store the outputs.
//!
//! Stopping a prompt (time limit, cancel, shutdown) deletes it from ComfyUI's queue if it
//! is still waiting there (it then never runs, and nothing is charged) and interrupts it if
//! it runs. An interrupt is lost when it reaches ComfyUI after the prompt was taken from
//! the queue but before it started (starting clears ComfyUI's interrupt flag), so until the
//! prompt has ended the runner interrupts it again whenever it is seen starting or running.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::comfyui::{
    ComfyClient, ComfyError, EventStream, HistoryEntry, Place, Submitted, WsEvent,
};
use crate::store::OutputStore;

/// Timings of the follow loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/history` poll while the WebSocket is up (a safety net).
    pub poll_interval: Duration,
    /// `/history` poll without a WebSocket (never opened, dropped, or silent).
    pub poll_interval_no_ws: Duration,
    /// After an interrupt, how long to wait for ComfyUI to end the prompt.
    pub interrupt_grace: Duration,
    /// Consecutive failed polls (no answer) before ComfyUI counts as gone.
    pub max_poll_failures: u32,
    /// Follow `/ws`; without it the prompt is submitted without `client_id` and polled.
    pub use_websocket: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll_interval: Duration::from_secs(2),
            poll_interval_no_ws: Duration::from_millis(250),
            interrupt_grace: Duration::from_secs(120),
            max_poll_failures: 20,
            use_websocket: true,
        }
    }
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Prefix of the outputs' store keys (the Tollgate job id).
    pub key: &'a str,
    /// The workflow in ComfyUI API format.
    pub workflow: &'a Value,
    pub time_limit: Duration,
}

/// Why the runner interrupted a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TimeLimit,
    Cancelled,
}

/// Progress for the job's status: percent of the workflow's nodes, and the node running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub percent: f64,
    pub node: Option<String>,
}

/// A stored output file.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub node_id: String,
    pub filename: String,
    pub subfolder: String,
    pub content_type: String,
    pub size: u64,
    /// Where the store put it (path or URL).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 400 from `POST /prompt`: nothing ran. `error` = `{type,message,details,extra_info}`.
    Rejected { error: Value, node_errors: Value },
    /// `execution_error` at run time.
    Execution {
        node_id: String,
        node_type: String,
        exception_type: String,
        exception_message: String,
        traceback: Vec<String>,
    },
    /// An output could not be fetched or stored.
    Output(String),
    /// ComfyUI answered something the runner does not understand.
    Protocol(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `node_errors` lists output branches ComfyUI skipped (200 with node errors).
    Succeeded {
        outputs: Vec<OutputFile>,
        node_errors: Value,
    },
    Failed(Failure),
    /// Ended by an interrupt. `reason` is `None` when someone else interrupted it;
    /// `confirmed` is false when ComfyUI did not end it within the grace period.
    Interrupted {
        reason: Option<StopReason>,
        node_id: Option<String>,
        confirmed: bool,
    },
    /// Stopped while it waited in ComfyUI's queue (or before it was submitted): deleted
    /// from the queue, it never ran.
    Withdrawn {
        reason: StopReason,
    },
    /// ComfyUI did not answer (down, refused, 5xx): the job was not run or its end is
    /// unknown. The text is the error as it displays ("ComfyUI unavailable: …").
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub prompt_id: String,
    pub outcome: Outcome,
    /// Execution wall time, `execution_start` to the end, as ComfyUI's history timestamps
    /// record it (the runner's own clock when history has none).
    pub gpu_seconds: f64,
    /// Highest VRAM in use on the device among the `/system_stats` samples taken.
    pub peak_vram_bytes: Option<u64>,
    /// Set when the runner sent an interrupt, whatever the prompt's end was
    /// (an interrupt can land after the prompt finished).
    pub stop_requested: Option<StopReason>,
}

struct Tracker {
    total: usize,
    done: BTreeSet<String>,
    current: Option<String>,
    fraction: f64,
}

impl Tracker {
    fn progress(&self) -> Progress {
        let running = match &self.current {
            Some(c) if !self.done.contains(c) => self.fraction,
            _ => 0.0,
        };
        let total = self.total.max(1) as f64;
        let percent = ((self.done.len() as f64 + running) / total * 100.0).clamp(0.0, 99.0);
        Progress {
            percent,
            node: self.current.clone(),
        }
    }

    fn apply(&mut self, ev: &WsEvent) -> bool {
        match ev {
            WsEvent::ExecutionCached { nodes, .. } => self.done.extend(nodes.iter().cloned()),
            WsEvent::Executing { node: Some(n), .. } => {
                if let Some(prev) = self.current.replace(n.clone()) {
                    self.done.insert(prev);
                }
                self.fraction = 0.0;
            }
            WsEvent::Progress { value, max, .. } if *max > 0.0 => {
                self.fraction = (value / max).clamp(0.0, 1.0)
            }
            WsEvent::Executed { node, .. } => {
                self.done.insert(node.clone());
            }
            _ => return false,
        }
        true
    }
}

struct Vram(Option<u64>);

impl Vram {
    async fn sample(&mut self, client: &ComfyClient) -> Result<(), ComfyError> {
        let stats = client.system_stats().await?;
        if let Some(used) = stats.vram_used() {
            self.0 = Some(self.0.map_or(used, |p| p.max(used)));
        }
        Ok(())
    }
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        // The sender is gone: nobody can cancel any more.
        std::future::pending::<()>().await;
    }
}

async fn next_event(ws: &mut Option<EventStream>) -> Option<WsEvent> {
    match ws {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn poll_timer(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Runs `job` on `client` to its end. Never panics on ComfyUI's answers; every way a job
/// can end is an [`Outcome`].
pub async fn execute(
    client: &ComfyClient,
    store: &dyn OutputStore,
    job: Job<'_>,
    mut cancel: watch::Receiver<bool>,
    progress: Option<&watch::Sender<Progress>>,
    opts: &Options,
) -> Report {
    let prompt_id = uuid::Uuid::new_v4().to_string();
    let mut report = Report {
        prompt_id: prompt_id.clone(),
        outcome: Outcome::Unavailable(String::new()),
        gpu_seconds: 0.0,
        peak_vram_bytes: None,
        stop_requested: None,
    };
    let mut vram = Vram(None);
    // Health first: nothing is submitted to a ComfyUI that does not answer.
    if let Err(e) = vram.sample(client).await {
        report.outcome = Outcome::Unavailable(e.to_string());
        return report;
    }

    if *cancel.borrow() {
        // Cancelled while waiting to start: nothing goes to ComfyUI.
        report.stop_requested = Some(StopReason::Cancelled);
        report.peak_vram_bytes = vram.0;
        report.outcome = Outcome::Withdrawn {
            reason: StopReason::Cancelled,
        };
        return report;
    }

    let client_id = format!("runner-{}", uuid::Uuid::new_v4().simple());
    let mut ws = if opts.use_websocket {
        client.connect(&client_id).await.ok()
    } else {
        None
    };
    let submitted = client
        .submit(
            job.workflow,
            &prompt_id,
            ws.as_ref().map(|_| client_id.as_str()),
        )
        .await;
    let node_errors = match submitted {
        Ok(Submitted::Accepted { node_errors, .. }) => node_errors,
        Ok(Submitted::Rejected { error, node_errors }) => {
            report.outcome = Outcome::Failed(Failure::Rejected { error, node_errors });
            report.peak_vram_bytes = vram.0;
            return report;
        }
        Err(e @ ComfyError::Unavailable(_)) => {
            report.outcome = Outcome::Unavailable(e.to_string());
            return report;
        }
        Err(ComfyError::Protocol(m)) => {
            report.outcome = Outcome::Failed(Failure::Protocol(m));
            return report;
        }
    };

    let mut tracker = Tracker {
        total: job.workflow.as_object().map_or(1, |o| o.len()),
        done: BTreeSet::new(),
        current: None,
        fraction: 0.0,
    };
    let deadline = Instant::now() + job.time_limit;
    let mut poll = poll_timer(if ws.is_some() {
        opts.poll_interval
    } else {
        opts.poll_interval_no_ws
    });
    let mut started_at: Option<Instant> = None;
    let mut stop_at: Option<Instant> = None;
    let mut failures = 0u32;

    let entry: HistoryEntry = loop {
        let grace_end = stop_at.map(|t| t + opts.interrupt_grace);
        tokio::select! {
            ev = next_event(&mut ws) => match ev {
                Some(ev) => {
                    if ev.prompt_id().is_some_and(|p| p != prompt_id) {
                        continue;
                    }
                    if matches!(ev, WsEvent::ExecutionStart { .. }) {
                        started_at.get_or_insert_with(Instant::now);
                        if stop_at.is_some() {
                            // It started after the stop: an interrupt sent before may
                            // have been cleared by the start.
                            let _ = client.interrupt(&prompt_id).await;
                        }
                    }
                    if let WsEvent::Executing { node: None, prompt_id: Some(_) } = ev {
                        // The end marker: history is written before it is sent.
                        match client.history(&prompt_id).await {
                            Ok(Some(h)) => break h,
                            _ => poll = poll_timer(opts.poll_interval_no_ws),
                        }
                    } else if tracker.apply(&ev) && let Some(p) = progress {
                        p.send_replace(tracker.progress());
                    }
                }
                None => {
                    // Dropped: nothing is replayed to a new socket, so history is the way on.
                    ws = None;
                    poll = poll_timer(opts.poll_interval_no_ws);
                }
            },
            _ = poll.tick() => {
                let _ = vram.sample(client).await;
                match client.history(&prompt_id).await {
                    Ok(Some(h)) => break h,
                    Ok(None) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures >= opts.max_poll_failures {
                            report.outcome = Outcome::Unavailable(e.to_string());
                            report.peak_vram_bytes = vram.0;
                            return report;
                        }
                    }
                }
                if let Some(reason) = report.stop_requested {
                    match enforce_stop(client, &prompt_id, true).await {
                        Stopping::Ended(h) => break h,
                        Stopping::Withdrawn => {
                            report.outcome = Outcome::Withdrawn { reason };
                            report.peak_vram_bytes = vram.0;
                            return report;
                        }
                        Stopping::Underway => {}
                    }
                }
            },
            reason = stop_requested(deadline, &mut cancel), if stop_at.is_none() => {
                report.stop_requested = Some(reason);
                stop_at = Some(Instant::now());
                match stop(client, &prompt_id).await {
                    Stopping::Ended(h) => break h,
                    Stopping::Withdrawn => {
                        report.outcome = Outcome::Withdrawn { reason };
                        report.peak_vram_bytes = vram.0;
                        return report;
                    }
                    Stopping::Underway => {}
                }
            },
            _ = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now)), if grace_end.is_some() => {
                report.outcome = Outcome::Interrupted {
                    reason: report.stop_requested,
                    node_id: tracker.current.clone(),
                    confirmed: false,
                };
                report.gpu_seconds = started_at.map_or(0.0, |s| s.elapsed().as_secs_f64());
                report.peak_vram_bytes = vram.0;
                return report;
            },
        }
    };
    drop(ws);

    let _ = vram.sample(client).await;
    report.peak_vram_bytes = vram.0;
    report.gpu_seconds = entry
        .execution_seconds()
        .or_else(|| started_at.map(|s| s.elapsed().as_secs_f64()))
        .unwrap_or(0.0);
    report.outcome = settle(
        client,
        store,
        &job,
        &entry,
        node_errors,
        report.stop_requested,
    )
    .await;
    if let (Outcome::Succeeded { .. }, Some(p)) = (&report.outcome, progress) {
        p.send_replace(Progress {
            percent: 100.0,
            node: None,
        });
    }
    report
}

/// The time limit or a cancel, whichever comes first.
async fn stop_requested(deadline: Instant, cancel: &mut watch::Receiver<bool>) -> StopReason {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => StopReason::TimeLimit,
        _ = cancelled(cancel) => StopReason::Cancelled,
    }
}

/// Where a stopped prompt stands.
enum Stopping {
    /// Running (or unknown): its end is still to come.
    Underway,
    /// Finished, as its history says.
    Ended(HistoryEntry),
    /// Deleted from the queue before it ran.
    Withdrawn,
}

/// Stops `prompt_id`: deleted from the queue if it waits there, interrupted if it runs.
async fn stop(client: &ComfyClient, prompt_id: &str) -> Stopping {
    let _ = client.delete_pending(&[prompt_id.to_string()]).await;
    let _ = client.interrupt(prompt_id).await;
    enforce_stop(client, prompt_id, false).await
}

/// Where the stopped prompt is, and what keeps the stop in force: a prompt still waiting is
/// deleted again, one running is interrupted again when `interrupt_again` (an interrupt
/// that reached ComfyUI between taking the prompt and starting it was lost).
async fn enforce_stop(client: &ComfyClient, prompt_id: &str, interrupt_again: bool) -> Stopping {
    let Ok(queue) = client.queue().await else {
        return Stopping::Underway;
    };
    match queue.place(prompt_id) {
        Place::Running => {
            if interrupt_again {
                let _ = client.interrupt(prompt_id).await;
            }
            Stopping::Underway
        }
        Place::Pending => {
            let _ = client.delete_pending(&[prompt_id.to_string()]).await;
            Stopping::Underway
        }
        // Out of the queue: it either finished (ComfyUI writes its history in the same step
        // that takes it out of the queue) or was deleted and will never run.
        Place::Absent => match client.history(prompt_id).await {
            Ok(Some(entry)) => Stopping::Ended(entry),
            Ok(None) => Stopping::Withdrawn,
            Err(_) => Stopping::Underway,
        },
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn settle(
    client: &ComfyClient,
    store: &dyn OutputStore,
    job: &Job<'_>,
    entry: &HistoryEntry,
    node_errors: Value,
    stop: Option<StopReason>,
) -> Outcome {
    if entry.status_str == "success" {
        let mut outputs = Vec::new();
        // Previews (`temp`) and inputs are not results.
        for (node_id, file) in entry.files.iter().filter(|(_, f)| f.kind == "output") {
            let bytes = match client.view(file).await {
                Ok(b) => b,
                Err(e @ ComfyError::Unavailable(_)) => return Outcome::Unavailable(e.to_string()),
                Err(e) => return Outcome::Failed(Failure::Output(e.to_string())),
            };
            let key = if file.subfolder.is_empty() {
                format!("{}/{}", job.key, file.filename)
            } else {
                format!("{}/{}/{}", job.key, file.subfolder, file.filename)
            };
            let content_type = content_type(&file.filename);
            match store.put(&key, content_type, &bytes).await {
                Ok(location) => outputs.push(OutputFile {
                    node_id: node_id.clone(),
                    filename: file.filename.clone(),
                    subfolder: file.subfolder.clone(),
                    content_type: content_type.to_string(),
                    size: bytes.len() as u64,
                    location,
                }),
                Err(e) => return Outcome::Failed(Failure::Output(e.to_string())),
            }
        }
        return Outcome::Succeeded {
            outputs,
            node_errors,
        };
    }
    if let Some(d) = entry.message("execution_interrupted") {
        return Outcome::Interrupted {
            reason: stop,
            node_id: d.get("node_id").and_then(Value::as_str).map(str::to_string),
            confirmed: true,
        };
    }
    if let Some(d) = entry.message("execution_error") {
        return Outcome::Failed(Failure::Execution {
            node_id: text(d, "node_id"),
            node_type: text(d, "node_type"),
            exception_type: text(d, "exception_type"),
            exception_message: text(d, "exception_message"),
            traceback: d
                .get("traceback")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Outcome::Failed(Failure::Protocol(format!(
        "history ended with status {:?} and no execution message",
        entry.status_str
    )))
}

fn content_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("mp3") => "audio/mpeg",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
