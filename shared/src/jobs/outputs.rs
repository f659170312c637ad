//! Download links for a job's outputs. A runner that stores outputs in S3-compatible
//! storage records each one's place as `s3://bucket/key`; when Tollgate serves the job
//! (`GET jobs`, `GET jobs/{id}`) it adds a short-lived presigned `GET` URL (`url`, with
//! `url_expires_at`) to each output that lies in the configured output bucket. Outputs in a
//! runner's local directory keep their path and get no link.
//!
//! Only keys with the job's own id as one of their path segments are signed: the runner
//! writes `{prefix}/{job_id}/...`, and a runner can only record outputs for jobs it ran, so
//! a runner (of a tenant's dedicated worker, say) cannot make Tollgate sign a link to
//! another tenant's objects.
//!
//! Settings (all read by `Config`):
//! - `TOLLGATE_OUTPUT_S3_BUCKET`: the bucket runners upload to; unset, no links.
//! - `TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID`, `TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY` (required with
//!   a bucket), `TOLLGATE_OUTPUT_S3_SESSION_TOKEN` (temporary credentials): a key that may
//!   read the bucket.
//! - `TOLLGATE_OUTPUT_S3_REGION` (default `us-east-1`), `TOLLGATE_OUTPUT_S3_ENDPOINT`
//!   (default AWS for the region; `http(s)://host[:port]` for another S3-compatible
//!   service, path-style; `https://{bucket}.host` for virtual-hosted addressing).
//! - `TOLLGATE_OUTPUT_LINK_TTL_SECONDS`: how long a link works (default 900, at most 7 days).

use serde_json::{Value as Json, json};

use super::s3::{self, Credentials, Endpoint};
use crate::clock::rfc3339;

pub const DEFAULT_LINK_TTL_SECONDS: i64 = 900;

/// The bucket job outputs are downloaded from, and a key that may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputBucket {
    pub endpoint: Endpoint,
    pub bucket: String,
    pub credentials: Credentials,
    pub link_ttl_seconds: i64,
}

impl OutputBucket {
    /// The `TOLLGATE_OUTPUT_*` settings: `None` without a bucket; an error for a partial or
    /// invalid configuration.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let key_id = get("TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID");
        let secret = get("TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY");
        let Some(bucket) = get("TOLLGATE_OUTPUT_S3_BUCKET") else {
            if key_id.is_some() || secret.is_some() {
                return Err(
                    "TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY are set but TOLLGATE_OUTPUT_S3_BUCKET is not"
                        .into(),
                );
            }
            return Ok(None);
        };
        let (Some(access_key_id), Some(secret_access_key)) = (key_id, secret) else {
            return Err(
                "TOLLGATE_OUTPUT_S3_BUCKET needs TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID and TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY"
                    .into(),
            );
        };
        let region = get("TOLLGATE_OUTPUT_S3_REGION").unwrap_or_else(|| "us-east-1".into());
        let endpoint = Endpoint::new(get("TOLLGATE_OUTPUT_S3_ENDPOINT").as_deref(), &region)
            .map_err(|e| format!("TOLLGATE_OUTPUT_S3_ENDPOINT: {e}"))?;
        endpoint
            .object(&bucket, "key")
            .map_err(|e| format!("TOLLGATE_OUTPUT_S3_BUCKET: {e}"))?;
        let link_ttl_seconds = match get("TOLLGATE_OUTPUT_LINK_TTL_SECONDS") {
            None => DEFAULT_LINK_TTL_SECONDS,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|ttl| (1..=s3::MAX_PRESIGN_SECONDS).contains(ttl))
                .ok_or_else(|| {
                    format!(
                        "TOLLGATE_OUTPUT_LINK_TTL_SECONDS must be from 1 to {}, got {text:?}",
                        s3::MAX_PRESIGN_SECONDS
                    )
                })?,
        };
        Ok(Some(OutputBucket {
            endpoint,
            bucket,
            credentials: Credentials {
                access_key_id,
                secret_access_key,
                session_token: get("TOLLGATE_OUTPUT_S3_SESSION_TOKEN"),
            },
            link_ttl_seconds,
        }))
    }

    /// A presigned URL for `location` (`s3://bucket/key`) of job `job_id`, when it is in this
    /// bucket and under the job's id.
    pub fn link(&self, job_id: &str, location: &str, now: i64) -> Option<String> {
        let (bucket, key) = location.strip_prefix("s3://")?.split_once('/')?;
        if bucket != self.bucket || !key.split('/').any(|segment| segment == job_id) {
            return None;
        }
        if key
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
        {
            return None;
        }
        let object = self.endpoint.object(bucket, key).ok()?;
        Some(s3::presign_get(
            &self.endpoint,
            &self.credentials,
            &object,
            now,
            self.link_ttl_seconds,
        ))
    }
}

/// Adds `url` and `url_expires_at` to each of the job's outputs that `bucket` can serve.
pub fn add_download_links(job: &mut Json, bucket: Option<&OutputBucket>, now: i64) {
    let Some(bucket) = bucket else { return };
    let Some(job_id) = job["id"].as_str().map(str::to_string) else {
        return;
    };
    let Some(outputs) = job["outputs"].as_array_mut() else {
        return;
    };
    for output in outputs {
        let Some(location) = output["location"].as_str() else {
            continue;
        };
        if let Some(url) = bucket.link(&job_id, location, now) {
            output["url"] = json!(url);
            output["url_expires_at"] = json!(rfc3339(now + bucket.link_ttl_seconds));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const FULL: &[(&str, &str)] = &[
        ("TOLLGATE_OUTPUT_S3_BUCKET", "outputs"),
        ("TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("TOLLGATE_OUTPUT_S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("TOLLGATE_OUTPUT_LINK_TTL_SECONDS", "600"),
    ];

    #[test]
    fn settings_are_all_or_nothing() {
        assert_eq!(OutputBucket::from_lookup(lookup(&[])), Ok(None));
        let bucket = OutputBucket::from_lookup(lookup(FULL)).unwrap().unwrap();
        assert_eq!(bucket.bucket, "outputs");
        assert_eq!(bucket.endpoint.region, "us-east-1");
        assert_eq!(bucket.link_ttl_seconds, 600);
        for partial in [
            &[("TOLLGATE_OUTPUT_S3_BUCKET", "outputs")][..],
            &[("TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID", "AKIA")][..],
            &[
                ("TOLLGATE_OUTPUT_S3_BUCKET", "Not_A_Bucket"),
                ("TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID", "AKIA"),
                ("TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY", "s"),
            ][..],
            &[
                ("TOLLGATE_OUTPUT_S3_BUCKET", "outputs"),
                ("TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID", "AKIA"),
                ("TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY", "s"),
                ("TOLLGATE_OUTPUT_LINK_TTL_SECONDS", "604801"),
            ][..],
        ] {
            assert!(
                OutputBucket::from_lookup(lookup(partial)).is_err(),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn only_the_jobs_own_objects_in_the_bucket_get_a_link() {
        let bucket = OutputBucket::from_lookup(lookup(FULL)).unwrap().unwrap();
        let now = 1_369_353_600;
        let mut job = json!({
            "id": "job-1",
            "outputs": [
                {"location": "s3://outputs/runs/job-1/ComfyUI_00001_.png"},
                {"location": "s3://outputs/runs/job-2/ComfyUI_00001_.png"},
                {"location": "s3://other/runs/job-1/a.png"},
                {"location": "s3://outputs/runs/job-1x/a.png"},
                {"location": "s3://outputs/job-1/../job-2/a.png"},
                {"location": "/var/lib/gpu-runner/outputs/job-1/a.png"},
                {"node_id": "9"},
            ],
        });
        add_download_links(&mut job, Some(&bucket), now);
        let outputs = job["outputs"].as_array().unwrap();
        let url = outputs[0]["url"].as_str().unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/outputs/runs/job-1/ComfyUI_00001_.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
            "{url}"
        );
        assert!(url.contains("&X-Amz-Expires=600&"), "{url}");
        assert_eq!(outputs[0]["url_expires_at"], "2013-05-24T00:10:00Z");
        for other in &outputs[1..] {
            assert!(other.get("url").is_none(), "{other}");
        }
        assert_eq!(
            outputs[5]["location"],
            "/var/lib/gpu-runner/outputs/job-1/a.png"
        );
        // Without a configured bucket nothing changes.
        let mut plain = json!({"id": "job-1", "outputs": [{"location": "s3://outputs/job-1/a"}]});
        let before = plain.clone();
        add_download_links(&mut plain, None, now);
        assert_eq!(plain, before);
    }
}
