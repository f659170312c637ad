//! The runner's side of Tollgate's job queue: one [`Queue`] trait, whatever the transport.
//!
//! [`HttpQueue`] speaks Tollgate's runner endpoints with a runner token (`tgr_…`), for
//! rented hosts that must not hold database credentials. The direct transport
//! ([`crate::direct::DbQueue`], the claim SQL of `shared/`) implements the same trait.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a heartbeat reports about this runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerInfo {
    pub host: String,
    pub gpu: Option<String>,
    pub vram_mb: Option<i64>,
    pub version: Option<String>,
}

/// A claimed job and its lease.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClaimedJob {
    pub job_id: String,
    pub lease_id: String,
    /// 1 for the first run, counting retries.
    pub attempt: i64,
    pub time_limit_seconds: i64,
    /// The workflow in ComfyUI API format.
    pub workflow: Value,
}

impl ClaimedJob {
    pub fn lease(&self) -> Lease {
        Lease {
            job_id: self.job_id.clone(),
            lease_id: self.lease_id.clone(),
        }
    }
}

/// The runner's hold on a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub lease_id: String,
}

/// What a renewal learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseStatus {
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    Succeeded,
    /// Failed for good: the same workflow would fail again (rejected, runtime error, time
    /// limit). A failure worth retrying is [`Queue::fail`].
    Failed,
    Cancelled,
}

impl FinalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "succeeded",
            FinalStatus::Failed => "failed",
            FinalStatus::Cancelled => "cancelled",
        }
    }
}

/// How a job ended, as the queue records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub status: FinalStatus,
    /// One object per stored output (`location` is where the store put it).
    pub outputs: Vec<Value>,
    pub gpu_seconds: i64,
    pub peak_vram_mb: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueError {
    /// No usable answer (network, timeout, 5xx): worth retrying.
    Unavailable(String),
    /// The runner no longer holds the job's lease (expired and re-queued, or finished).
    LeaseLost,
    /// Refused (bad token, invalid request): retrying the same call will not help.
    Refused { status: u16, message: String },
    /// An answer the runner does not understand.
    Protocol(String),
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Unavailable(m) => write!(f, "queue unavailable: {m}"),
            QueueError::LeaseLost => write!(f, "the job's lease was lost"),
            QueueError::Refused { status, message } => {
                write!(f, "queue refused the call ({status}): {message}")
            }
            QueueError::Protocol(m) => write!(f, "unexpected answer from the queue: {m}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// The queue as a runner sees it. Every call acts for this runner (its token or its
/// configured worker) only.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Registers the runner on the first call, refreshes it on later ones.
    async fn heartbeat(&self, info: &RunnerInfo) -> Result<(), QueueError>;
    /// The best due job that fits `free_vram_mb`, now running under a new lease. A queue
    /// that can hold the call waits up to `wait` for a job to come; one that cannot answers
    /// at once, and the caller polls.
    async fn claim(
        &self,
        free_vram_mb: i64,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, QueueError>;
    /// Extends the lease.
    async fn renew(&self, lease: &Lease) -> Result<LeaseStatus, QueueError>;
    /// Records progress (0..=100 and the node running); also extends the lease.
    async fn progress(
        &self,
        lease: &Lease,
        percent: i64,
        node: Option<&str>,
    ) -> Result<LeaseStatus, QueueError>;
    /// Ends the job. Applied once: a retry of the same finish changes nothing.
    async fn finish(&self, lease: &Lease, finish: &Finish) -> Result<(), QueueError>;
    /// This attempt failed: the queue retries the job (after a backoff) while attempts remain.
    async fn fail(&self, lease: &Lease, error: &str) -> Result<(), QueueError>;
}

/// How long a call to the runner endpoints may take, a claim's wait aside.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a claim may ask the runner endpoints to wait for a job.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(20);

/// Tollgate's runner endpoints (`/api/v1/runner/...`) with a runner token. A claim waits on
/// the server (`wait_seconds`) until a job is routed to the runner's worker.
pub struct HttpQueue {
    api: String,
    token: String,
    http: reqwest::Client,
}

impl HttpQueue {
    /// `server` is Tollgate's base URL (`https://api.example`; `/api/v1` is added).
    pub fn new(server: &str, token: &str) -> Result<Self, QueueError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| QueueError::Protocol(format!("HTTP client: {e}")))?;
        let base = server.trim_end_matches('/');
        let api = if base.ends_with("/api/v1") {
            base.to_string()
        } else {
            format!("{base}/api/v1")
        };
        Ok(HttpQueue {
            api,
            token: token.to_string(),
            http,
        })
    }

    /// `POST` to `path`: `Ok(None)` on 204, the JSON body on another 2xx.
    async fn post(&self, path: &str, body: &Value) -> Result<Option<Value>, QueueError> {
        self.post_within(path, body, REQUEST_TIMEOUT).await
    }

    /// [`Self::post`] with its own timeout.
    async fn post_within(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Option<Value>, QueueError> {
        let response = self
            .http
            .post(format!("{}/{path}", self.api))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(format!("POST {path}: {e}")))?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = response
            .text()
            .await
            .map_err(|e| QueueError::Unavailable(format!("POST {path}: {e}")))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| QueueError::Protocol(format!("POST {path}: {e}")));
        }
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = error["error"]["code"].as_str().unwrap_or_default();
        let message = error["error"]["message"]
            .as_str()
            .map_or_else(|| text.chars().take(500).collect(), str::to_string);
        if status == StatusCode::CONFLICT && code == "lease_lost" {
            return Err(QueueError::LeaseLost);
        }
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(QueueError::Unavailable(format!(
                "POST {path}: {status}: {message}"
            )));
        }
        Err(QueueError::Refused {
            status: status.as_u16(),
            message: format!("POST {path}: {message}"),
        })
    }

    fn lease_status(path: &str, body: Option<Value>) -> Result<LeaseStatus, QueueError> {
        let body = body.ok_or_else(|| QueueError::Protocol(format!("POST {path}: no body")))?;
        let cancel_requested = body["cancel_requested"].as_bool().ok_or_else(|| {
            QueueError::Protocol(format!("POST {path}: no cancel_requested in {body}"))
        })?;
        Ok(LeaseStatus { cancel_requested })
    }
}

#[async_trait]
impl Queue for HttpQueue {
    async fn heartbeat(&self, info: &RunnerInfo) -> Result<(), QueueError> {
        let body = serde_json::to_value(info).map_err(|e| QueueError::Protocol(e.to_string()))?;
        self.post("runner/heartbeat", &body).await.map(|_| ())
    }

    async fn claim(
        &self,
        free_vram_mb: i64,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, QueueError> {
        let wait = wait.min(MAX_CLAIM_WAIT);
        match self
            .post_within(
                "runner/claim",
                &json!({ "free_vram_mb": free_vram_mb.max(0), "wait_seconds": wait.as_secs() }),
                REQUEST_TIMEOUT + wait,
            )
            .await?
        {
            None => Ok(None),
            Some(body) => serde_json::from_value(body)
                .map(Some)
                .map_err(|e| QueueError::Protocol(format!("POST runner/claim: {e}"))),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<LeaseStatus, QueueError> {
        let path = format!("runner/jobs/{}/renew", lease.job_id);
        let body = self
            .post(&path, &json!({ "lease_id": lease.lease_id }))
            .await?;
        Self::lease_status(&path, body)
    }

    async fn progress(
        &self,
        lease: &Lease,
        percent: i64,
        node: Option<&str>,
    ) -> Result<LeaseStatus, QueueError> {
        let path = format!("runner/jobs/{}/progress", lease.job_id);
        let body = self
            .post(
                &path,
                &json!({
                    "lease_id": lease.lease_id,
                    "progress": percent.clamp(0, 100),
                    "current_node": node,
                }),
            )
            .await?;
        Self::lease_status(&path, body)
    }

    async fn finish(&self, lease: &Lease, finish: &Finish) -> Result<(), QueueError> {
        let path = format!("runner/jobs/{}/finish", lease.job_id);
        self.post(
            &path,
            &json!({
                "lease_id": lease.lease_id,
                "status": finish.status.as_str(),
                "outputs": finish.outputs,
                "gpu_seconds": finish.gpu_seconds.max(0),
                "peak_vram_mb": finish.peak_vram_mb,
                "error": finish.error,
            }),
        )
        .await
        .map(|_| ())
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<(), QueueError> {
        let path = format!("runner/jobs/{}/fail", lease.job_id);
        self.post(
            &path,
            &json!({ "lease_id": lease.lease_id, "error": error }),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_prefix_is_added_once() {
        let q = HttpQueue::new("http://127.0.0.1:8080/", "tgr_x").unwrap();
        assert_eq!(q.api, "http://127.0.0.1:8080/api/v1");
        let q = HttpQueue::new("https://api.example/api/v1", "tgr_x").unwrap();
        assert_eq!(q.api, "https://api.example/api/v1");
    }

    #[test]
    fn a_claim_answer_parses() {
        let job: ClaimedJob = serde_json::from_value(json!({
            "job_id": "j1", "lease_id": "l1", "lease_expires_at": "2026-01-01T00:00:00Z",
            "attempt": 2, "time_limit_seconds": 600, "workflow": {"1": {"class_type": "X"}},
        }))
        .unwrap();
        assert_eq!(job.attempt, 2);
        assert_eq!(job.lease().lease_id, "l1");
    }
}
