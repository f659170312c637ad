//! The job loop: heartbeats, claims while ComfyUI is healthy, idle and has VRAM to spare,
//! runs each claimed job with [`execute`], keeps its lease alive (turning a cancel request
//! into the executor's cancellation), reports progress, and settles the job.
//!
//! An idle loop asks the queue to hold its claim until a job comes (the runner endpoints
//! wait up to [`WorkerOptions::claim_wait`]); a queue that answers at once (the direct
//! transport, or a server that cannot wait) is polled at a short interval that backs off.
//!
//! One loop per ComfyUI instance (one per GPU), one heartbeat for the runner. On stop
//! (SIGTERM in the binary) no new job is claimed; a running job is let finish, or, past
//! the shutdown grace, interrupted and handed back to the queue to run elsewhere.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::comfyui::{ComfyClient, SystemStats};
use crate::execute::{self, Failure, Job, Outcome, Progress, Report, StopReason};
use crate::log::log;
use crate::queue::{ClaimedJob, FinalStatus, Finish, Queue, QueueError, RunnerInfo};
use crate::redact;
use crate::store::OutputStore;

const MIB: u64 = 1024 * 1024;
/// The longest error text sent to the queue.
const MAX_ERROR_CHARS: usize = 16_000;

/// Timings of the loop.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub heartbeat_interval: Duration,
    /// Lease renewal while a job runs (well under the queue's lease of 60 s).
    pub renew_interval: Duration,
    /// How often a changed progress is reported (a report renews the lease too).
    pub progress_interval: Duration,
    /// How long a claim may wait for a job when the queue can hold it (at most 20 s).
    pub claim_wait: Duration,
    /// Poll interval when a claim came back empty without waiting (or ComfyUI cannot take a
    /// job): starts at `idle_poll_min`, doubles up to `idle_poll_max`, each wait jittered to
    /// between half and all of it.
    pub idle_poll_min: Duration,
    pub idle_poll_max: Duration,
    /// After a stop, how long a running job may go on before it is interrupted and handed
    /// back to the queue.
    pub shutdown_grace: Duration,
    /// Calls of a finish or fail that the queue did not answer, before giving up (the
    /// lease then expires and the queue re-runs the job).
    pub report_attempts: u32,
    /// No claim while ComfyUI reports less free VRAM than this.
    pub min_free_vram_mb: i64,
    pub execute: execute::Options,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            heartbeat_interval: Duration::from_secs(30),
            renew_interval: Duration::from_secs(15),
            progress_interval: Duration::from_secs(2),
            claim_wait: Duration::from_secs(20),
            idle_poll_min: Duration::from_millis(100),
            idle_poll_max: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(300),
            report_attempts: 8,
            min_free_vram_mb: 1,
            execute: execute::Options::default(),
        }
    }
}

/// Who the runner says it is in heartbeats; GPU and VRAM come from ComfyUI.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host: String,
    pub version: String,
}

/// What the loops did, for the caller's log (and tests).
#[derive(Debug, Default)]
pub struct Summary {
    pub claimed: AtomicU64,
    pub succeeded: AtomicU64,
    /// Finished as failed for good (rejected, runtime error, time limit).
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    /// Attempts handed back to the queue to be retried (ComfyUI down, shutdown, ...).
    pub released: AtomicU64,
    /// Jobs whose lease was lost, or whose end could not be reported.
    pub lost: AtomicU64,
}

impl Summary {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "claimed {}, succeeded {}, failed {}, cancelled {}, released {}, lost {}",
            Self::get(&self.claimed),
            Self::get(&self.succeeded),
            Self::get(&self.failed),
            Self::get(&self.cancelled),
            Self::get(&self.released),
            Self::get(&self.lost)
        )
    }
}

/// What one claim loop remembers between its rounds.
#[derive(Default)]
struct ClaimState {
    /// ComfyUI did not answer last time (logged once until it answers again).
    comfyui_failing: bool,
    /// Prompts found in ComfyUI's queue and being cleared (each logged once).
    leftovers: HashSet<String>,
}

/// The runner: a queue, the ComfyUI instances it drives, and where outputs go.
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub comfyui: Vec<ComfyClient>,
    pub store: Arc<dyn OutputStore>,
    pub identity: Identity,
    pub options: WorkerOptions,
}

/// Resolves when `stop` turns true; never when nobody can stop any more.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A random duration between half of `d` and `d`.
fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / 65_535.0;
    d.mul_f64(0.5 + 0.5 * r)
}

/// Sleeps `d`; true when stopped first.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stopped(stop) => true,
    }
}

/// The heartbeat's GPU and VRAM: every instance's first device.
fn runner_info(identity: &Identity, stats: &[SystemStats]) -> RunnerInfo {
    let devices: Vec<_> = stats.iter().filter_map(|s| s.devices.first()).collect();
    let gpu = (!devices.is_empty()).then(|| {
        devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
            .chars()
            .take(255)
            .collect()
    });
    let vram = devices.iter().map(|d| d.vram_total / MIB).sum::<u64>();
    RunnerInfo {
        host: identity.host.clone(),
        gpu,
        vram_mb: (!devices.is_empty()).then(|| i64::try_from(vram).unwrap_or(i64::MAX)),
        version: Some(identity.version.clone()),
    }
}

/// What a finished [`Report`] becomes in the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Finish(Finish),
    /// Hand the attempt back to be retried, with this error.
    Retry(String),
}

fn error_text(value: Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_ERROR_CHARS).collect();
    short.push('…');
    short
}

/// Maps the executor's report to the queue's verdict. `handing_back`: the runner stopped
/// the job itself (shutting down), so an interrupted run goes back to the queue. Errors
/// are written for the tenant: ComfyUI's tracebacks and the host's absolute paths stay in
/// the runner's log ([`redact`]).
pub fn settlement(report: &Report, handing_back: bool) -> Settlement {
    let gpu_seconds = report.gpu_seconds.max(0.0).ceil() as i64;
    let peak_vram_mb = report
        .peak_vram_bytes
        .map(|b| i64::try_from(b.div_ceil(MIB)).unwrap_or(i64::MAX));
    let finish = |status, outputs, error| {
        Settlement::Finish(Finish {
            status,
            outputs,
            gpu_seconds,
            peak_vram_mb,
            error,
        })
    };
    match &report.outcome {
        Outcome::Succeeded { outputs, .. } => finish(
            FinalStatus::Succeeded,
            outputs
                .iter()
                .map(|o| {
                    json!({
                        "node_id": o.node_id,
                        "filename": o.filename,
                        "subfolder": o.subfolder,
                        "type": "output",
                        "content_type": o.content_type,
                        "size": o.size,
                        "location": o.location,
                    })
                })
                .collect(),
            None,
        ),
        Outcome::Failed(Failure::Rejected { error, node_errors }) => finish(
            FinalStatus::Failed,
            Vec::new(),
            Some(error_text(redact::for_tenant(&json!({
                "kind": "rejected",
                "error": error,
                "node_errors": node_errors,
            })))),
        ),
        Outcome::Failed(Failure::Execution {
            node_id,
            node_type,
            exception_type,
            exception_message,
            ..
        }) => finish(
            FinalStatus::Failed,
            Vec::new(),
            Some(error_text(json!({
                "kind": "execution_error",
                "node_id": node_id,
                "node_type": node_type,
                "exception_type": exception_type,
                "exception_message": redact::strip_paths(exception_message.trim_end()),
            }))),
        ),
        Outcome::Failed(Failure::Output(m)) => Settlement::Retry(format!("output: {m}")),
        Outcome::Failed(Failure::Protocol(m)) => Settlement::Retry(format!("ComfyUI: {m}")),
        Outcome::Interrupted {
            reason: Some(StopReason::Cancelled),
            ..
        } if !handing_back => finish(FinalStatus::Cancelled, Vec::new(), None),
        Outcome::Interrupted {
            reason: Some(StopReason::TimeLimit),
            node_id,
            ..
        } => finish(
            FinalStatus::Failed,
            Vec::new(),
            Some(error_text(json!({
                "kind": "time_limit",
                "message": "the job's time limit was reached",
                "node_id": node_id,
            }))),
        ),
        Outcome::Withdrawn {
            reason: StopReason::TimeLimit,
        } => finish(
            FinalStatus::Failed,
            Vec::new(),
            Some(error_text(json!({
                "kind": "time_limit",
                "message": "the job's time limit was reached before ComfyUI started it",
                "node_id": null,
            }))),
        ),
        Outcome::Withdrawn {
            reason: StopReason::Cancelled,
        } if !handing_back => finish(FinalStatus::Cancelled, Vec::new(), None),
        Outcome::Withdrawn { .. } => {
            Settlement::Retry("the runner shut down before the job ended".to_string())
        }
        Outcome::Interrupted { reason, .. } => Settlement::Retry(if handing_back {
            "the runner shut down before the job ended".to_string()
        } else {
            format!("interrupted on the GPU host ({reason:?})")
        }),
        Outcome::Unavailable(m) => Settlement::Retry(m.clone()),
    }
}

impl Worker {
    /// Runs until `stop` turns true and every running job is settled or handed back.
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Summary {
        let summary = Summary::default();
        let loops = futures_util::future::join_all(
            self.comfyui
                .iter()
                .map(|c| self.claim_loop(c, stop.clone(), &summary)),
        );
        tokio::select! {
            _ = loops => {}
            _ = self.heartbeat_loop(stop.clone()) => {}
        }
        summary
    }

    async fn heartbeat_loop(&self, stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.options.heartbeat_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop = stop;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // Nothing to report once stopping; the claim loops end the run.
                _ = stopped(&mut stop) => std::future::pending::<()>().await,
            }
            let mut stats = Vec::new();
            for c in &self.comfyui {
                if let Ok(s) = c.system_stats().await {
                    stats.push(s);
                }
            }
            if let Err(e) = self
                .queue
                .heartbeat(&runner_info(&self.identity, &stats))
                .await
            {
                log(format!("heartbeat: {e}"));
            }
        }
    }

    /// The free VRAM (MiB) to claim with when `comfy` can take a job now: it answers, its
    /// first device has at least the minimum free, and nothing is in its queue. Whatever is
    /// in its queue is no job this runner holds — the prompt of a runner killed before this
    /// one started, or one whose interrupt never landed — so it is deleted if it waits and
    /// interrupted if it runs, and no job is claimed until the queue is empty: a new job
    /// would wait behind it, and a rerun of the same workflow would be served from the
    /// cache the leftover filled, charged for seconds of what took minutes.
    async fn ready_to_claim(&self, comfy: &ComfyClient, state: &mut ClaimState) -> Option<i64> {
        let checked = async {
            let stats = comfy.system_stats().await?;
            let queue = comfy.queue().await?;
            Ok::<_, crate::comfyui::ComfyError>((stats, queue))
        };
        let (stats, queue) = match checked.await {
            Ok(found) => {
                if std::mem::take(&mut state.comfyui_failing) {
                    log(format!("{}: answers again", comfy.base_url()));
                }
                found
            }
            Err(e) => {
                if !std::mem::replace(&mut state.comfyui_failing, true) {
                    log(format!("{}: not claiming: {e}", comfy.base_url()));
                }
                return None;
            }
        };
        if !queue.is_empty() {
            for (place, ids) in [("running", &queue.running), ("waiting", &queue.pending)] {
                for id in ids {
                    if state.leftovers.insert(id.clone()) {
                        log(format!(
                            "{}: prompt {id} ({place}) is no job of this runner; clearing it before claiming",
                            comfy.base_url()
                        ));
                    }
                }
            }
            if !queue.pending.is_empty() {
                let _ = comfy.delete_pending(&queue.pending).await;
            }
            for id in &queue.running {
                let _ = comfy.interrupt(id).await;
            }
            return None;
        }
        state.leftovers.clear();
        let free = stats
            .devices
            .first()
            .map(|d| i64::try_from(d.vram_free / MIB).unwrap_or(i64::MAX))?;
        (free >= self.options.min_free_vram_mb).then_some(free)
    }

    async fn claim_loop(
        &self,
        comfy: &ComfyClient,
        mut stop: watch::Receiver<bool>,
        summary: &Summary,
    ) {
        let opts = &self.options;
        let mut idle = opts.idle_poll_min;
        let mut state = ClaimState::default();
        loop {
            if *stop.borrow() {
                return;
            }
            // A claim in flight is never abandoned, not even on stop: the queue may be
            // handing this runner a job at that moment. It ends within the claim wait.
            let (claimed, held) = match self.ready_to_claim(comfy, &mut state).await {
                Some(free) => {
                    let asked = Instant::now();
                    let claimed = self.queue.claim(free, opts.claim_wait).await;
                    let held = !opts.claim_wait.is_zero() && asked.elapsed() >= opts.claim_wait / 2;
                    (claimed, held)
                }
                None => (Ok(None), false),
            };
            match claimed {
                Ok(Some(job)) => {
                    Summary::bump(&summary.claimed);
                    idle = opts.idle_poll_min;
                    self.run_job(comfy, job, &mut stop, summary).await;
                    continue;
                }
                // The queue waited for a job on our behalf: ask again at once.
                Ok(None) if held => {
                    idle = opts.idle_poll_min;
                    continue;
                }
                Ok(None) => {}
                Err(e) => log(format!("claim: {e}")),
            }
            if sleep_or_stop(jitter(idle), &mut stop).await {
                return;
            }
            idle = (idle * 2).min(opts.idle_poll_max);
        }
    }

    async fn run_job(
        &self,
        comfy: &ComfyClient,
        job: ClaimedJob,
        stop: &mut watch::Receiver<bool>,
        summary: &Summary,
    ) {
        let opts = &self.options;
        let lease = job.lease();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let time_limit =
            Duration::from_secs(u64::try_from(job.time_limit_seconds.max(1)).unwrap_or(1));
        let exec = execute::execute(
            comfy,
            self.store.as_ref(),
            Job {
                key: &job.job_id,
                workflow: &job.workflow,
                time_limit,
            },
            cancel_rx,
            Some(&progress_tx),
            &opts.execute,
        );
        tokio::pin!(exec);

        let mut tick = tokio::time::interval_at(
            Instant::now() + opts.progress_interval,
            opts.progress_interval,
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_renew = Instant::now();
        let mut reported: Option<(i64, Option<String>)> = None;
        let mut stop_seen = *stop.borrow();
        let mut grace_end = stop_seen.then(|| Instant::now() + opts.shutdown_grace);
        let mut handing_back = false;
        let mut user_cancelled = false;
        let mut lease_lost = false;

        let report = loop {
            tokio::select! {
                report = &mut exec => break report,
                _ = tick.tick(), if !lease_lost => {
                    let p = progress_rx.borrow().clone();
                    let now = (p.percent.floor() as i64, p.node.clone());
                    let result = if reported.as_ref() != Some(&now) {
                        let r = self.queue.progress(&lease, now.0, now.1.as_deref()).await;
                        if r.is_ok() {
                            reported = Some(now);
                        }
                        Some(r)
                    } else if last_renew.elapsed() >= opts.renew_interval {
                        Some(self.queue.renew(&lease).await)
                    } else {
                        None
                    };
                    match result {
                        Some(Ok(status)) => {
                            last_renew = Instant::now();
                            if status.cancel_requested && !user_cancelled {
                                log(format!("job {}: cancel requested", job.job_id));
                                user_cancelled = true;
                                cancel_tx.send_replace(true);
                            }
                        }
                        Some(Err(QueueError::LeaseLost)) => {
                            // Someone else owns the job now: stop working on it.
                            log(format!("job {}: lease lost; stopping it", job.job_id));
                            lease_lost = true;
                            cancel_tx.send_replace(true);
                        }
                        Some(Err(e)) => log(format!("job {}: renew: {e}", job.job_id)),
                        None => {}
                    }
                },
                _ = stopped(stop), if !stop_seen => {
                    stop_seen = true;
                    grace_end = Some(Instant::now() + opts.shutdown_grace);
                    log(format!(
                        "stopping: letting job {} finish (grace {:?})",
                        job.job_id, opts.shutdown_grace
                    ));
                },
                _ = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now)),
                    if grace_end.is_some() && !handing_back =>
                {
                    log(format!("job {}: shutdown grace over; interrupting it", job.job_id));
                    handing_back = true;
                    cancel_tx.send_replace(true);
                },
            }
        };

        if lease_lost {
            Summary::bump(&summary.lost);
            return;
        }
        match &report.outcome {
            Outcome::Failed(Failure::Execution {
                node_id,
                node_type,
                exception_type,
                exception_message,
                traceback,
            }) => log(format!(
                "job {} attempt {}: node {node_id} ({node_type}) raised {exception_type}: {}\nTraceback (most recent call last):\n{}",
                job.job_id,
                job.attempt,
                exception_message.trim_end(),
                traceback.concat().trim_end()
            )),
            Outcome::Failed(Failure::Rejected { error, node_errors }) => log(format!(
                "job {} attempt {}: ComfyUI refused the workflow: {}",
                job.job_id,
                job.attempt,
                error_text(json!({ "error": error, "node_errors": node_errors }))
            )),
            _ => {}
        }
        let settlement = settlement(&report, handing_back && !user_cancelled);
        let (result, counter) = match &settlement {
            Settlement::Finish(finish) => {
                log(format!(
                    "job {} attempt {}: {} ({} GPU s)",
                    job.job_id,
                    job.attempt,
                    finish.status.as_str(),
                    finish.gpu_seconds
                ));
                let counter = match finish.status {
                    FinalStatus::Succeeded => &summary.succeeded,
                    FinalStatus::Failed => &summary.failed,
                    FinalStatus::Cancelled => &summary.cancelled,
                };
                (
                    self.with_retries(|| self.queue.finish(&lease, finish))
                        .await,
                    counter,
                )
            }
            Settlement::Retry(error) => {
                log(format!(
                    "job {} attempt {}: handed back: {error}",
                    job.job_id, job.attempt
                ));
                (
                    self.with_retries(|| self.queue.fail(&lease, error)).await,
                    &summary.released,
                )
            }
        };
        match result {
            Ok(()) => Summary::bump(counter),
            Err(e) => {
                log(format!("job {}: could not report its end: {e}", job.job_id));
                Summary::bump(&summary.lost);
            }
        }
    }

    /// Calls `f` until it answers, retrying only what the queue did not answer.
    async fn with_retries<F, Fut>(&self, f: F) -> Result<(), QueueError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), QueueError>>,
    {
        let mut delay = self.options.idle_poll_min;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.options.report_attempts => {
                    log(format!("{e}; retrying in {delay:?}"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.options.idle_poll_max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::OutputFile;

    fn report(outcome: Outcome) -> Report {
        Report {
            prompt_id: "p".into(),
            outcome,
            gpu_seconds: 3.2,
            peak_vram_bytes: Some(7 * 1024 * MIB + 1),
            stop_requested: None,
        }
    }

    #[test]
    fn success_finishes_with_stored_outputs_rounded_up() {
        let s = settlement(
            &report(Outcome::Succeeded {
                outputs: vec![OutputFile {
                    node_id: "9".into(),
                    filename: "a.png".into(),
                    subfolder: String::new(),
                    content_type: "image/png".into(),
                    size: 10,
                    location: "/out/j/a.png".into(),
                }],
                node_errors: json!({}),
            }),
            false,
        );
        let Settlement::Finish(f) = s else { panic!() };
        assert_eq!(f.status, FinalStatus::Succeeded);
        assert_eq!((f.gpu_seconds, f.peak_vram_mb), (4, Some(7 * 1024 + 1)));
        assert_eq!(f.outputs[0]["location"], "/out/j/a.png");
    }

    #[test]
    fn deterministic_failures_finish_and_the_rest_is_retried() {
        let rejected = report(Outcome::Failed(Failure::Rejected {
            error: json!({"type": "prompt_outputs_failed_validation"}),
            node_errors: json!({"1": {"errors": []}}),
        }));
        let Settlement::Finish(f) = settlement(&rejected, false) else {
            panic!()
        };
        assert_eq!(f.status, FinalStatus::Failed);
        let error: Value = serde_json::from_str(f.error.as_deref().unwrap()).unwrap();
        assert_eq!(error["node_errors"]["1"]["errors"], json!([]));

        let down = report(Outcome::Unavailable("refused".into()));
        assert!(matches!(settlement(&down, false), Settlement::Retry(_)));

        let cancelled = report(Outcome::Interrupted {
            reason: Some(StopReason::Cancelled),
            node_id: None,
            confirmed: true,
        });
        assert!(matches!(
            settlement(&cancelled, false),
            Settlement::Finish(Finish {
                status: FinalStatus::Cancelled,
                ..
            })
        ));
        // Stopped by the runner's own shutdown: retried elsewhere.
        assert!(matches!(settlement(&cancelled, true), Settlement::Retry(_)));
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
