//! The S3-compatible output store against a real S3 implementation (moto, which checks
//! every signed upload's AWS Signature V4 against the IAM key made for the test), and the
//! download links Tollgate serves for outputs stored there. Needs `TOLLGATE_MOTO_SERVER`
//! (`source scripts/tools/s3.sh`).

#[allow(dead_code)]
#[macro_use]
mod support;

use std::time::Duration;

use gpu_runner::store::{OutputStore, S3Store};
use reqwest::StatusCode;
use support::comfyui_double::{ComfyDouble, Faults, Run, png_dimensions};
use support::moto::{BUCKET, Moto};
use support::tollgate::*;
use tollgate::clock::{Clock, rfc3339};
use tollgate::jobs::outputs::OutputBucket;
use tollgate::jobs::s3::Credentials;
use tollgate_tests::{expect_status, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_s3_store_uploads_objects_signed_as_s3_checks_them() {
    let moto = Moto::start().await;
    let store = S3Store::from_url(&moto.store_url("runs/eu-1"), moto.credentials.clone()).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    // Moto re-signs the decoded path, so it mis-checks keys with `+` or non-ASCII bytes
    // even from AWS's own SDK; those encodings are checked against botocore's vectors in
    // `tollgate::jobs::s3`. A space and `~` it checks right.
    let location = store
        .put("job-1/chain/inverted 00001~.png", "image/png", &bytes)
        .await
        .expect("moto accepts the signed PUT");
    assert_eq!(
        location,
        format!("s3://{BUCKET}/runs/eu-1/job-1/chain/inverted 00001~.png")
    );

    // The same upload signed with a wrong secret, or by an unknown key, is refused.
    let wrong = Credentials {
        secret_access_key: "not-the-secret".into(),
        ..moto.credentials.clone()
    };
    let store_wrong = S3Store::from_url(&moto.store_url("runs/eu-1"), wrong).unwrap();
    let refused = store_wrong
        .put("job-1/forged.png", "image/png", b"forged")
        .await
        .expect_err("a bad signature is refused");
    assert!(
        refused.0.contains("403") && refused.0.contains("SignatureDoesNotMatch"),
        "{refused}"
    );
    let unknown = Credentials {
        access_key_id: "AKIAUNKNOWNKEY000000".into(),
        ..moto.credentials.clone()
    };
    let refused = S3Store::from_url(&moto.store_url("runs"), unknown)
        .unwrap()
        .put("job-1/forged.png", "image/png", b"forged")
        .await
        .expect_err("an unknown key is refused");
    assert!(refused.0.contains("InvalidAccessKeyId"), "{refused}");
    // Keys that could leave the prefix never reach the service.
    assert!(store.put("../escape.png", "image/png", b"x").await.is_err());

    // What was stored is what was sent, under the encoded key; the forgery is not there.
    moto.authentication(false).await;
    let (status, content_type, body) = moto
        .get(&moto.object_url("runs/eu-1/job-1/chain/inverted 00001~.png"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/png");
    assert_eq!(body, bytes);
    let (status, _, _) = moto
        .get(&moto.object_url("runs/eu-1/job-1/forged.png"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outputs_stored_in_s3_are_served_with_a_download_link() {
    let moto = Moto::start().await;
    let (key_id, secret, endpoint) = (
        moto.credentials.access_key_id.clone(),
        moto.credentials.secret_access_key.clone(),
        moto.url.clone(),
    );
    let bucket = OutputBucket::from_lookup(|name| match name {
        "TOLLGATE_OUTPUT_S3_BUCKET" => Some(BUCKET.into()),
        "TOLLGATE_OUTPUT_S3_ENDPOINT" => Some(endpoint.clone()),
        "TOLLGATE_OUTPUT_S3_ACCESS_KEY_ID" => Some(key_id.clone()),
        "TOLLGATE_OUTPUT_S3_SECRET_ACCESS_KEY" => Some(secret.clone()),
        "TOLLGATE_OUTPUT_LINK_TTL_SECONDS" => Some("600".into()),
        _ => None,
    })
    .unwrap()
    .expect("an output bucket");
    let app = spawn_app_with(move |config| config.output_bucket = Some(bucket)).await;
    let owner = funded_tenant(&app, "s3-links").await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "success.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;

    // The real binary, storing into the bucket with the key from the environment.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .args(["run", "--server", &app.base_url, "--token", &token])
        .args([
            "--comfyui",
            &double.url(),
            "--store",
            &moto.store_url("runs"),
        ])
        .args(["--idle-min-ms", "10", "--idle-max-ms", "50"])
        .env("AWS_ACCESS_KEY_ID", &moto.credentials.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.credentials.secret_access_key)
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let done = wait_for_job(&app, &owner, &id, "the job to end", ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let output = &done["outputs"][0];
    let key = format!("runs/{id}/success_00001_.png");
    assert_eq!(output["location"], format!("s3://{BUCKET}/{key}"));
    let url = output["url"].as_str().expect("a download link");
    assert!(
        url.starts_with(&format!(
            "{}/{BUCKET}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F",
            moto.url, moto.credentials.access_key_id
        )),
        "{url}"
    );
    assert!(url.contains("&X-Amz-Expires=600&"), "{url}");
    assert_eq!(output["url_expires_at"], rfc3339(app.clock.now() + 600));
    // The list carries the link too.
    let list = expect_status(app.get("jobs", &owner.access_token).await, StatusCode::OK).await;
    assert!(list["data"][0]["outputs"][0]["url"].is_string(), "{list}");
    // The event keeps the stored place, not a link that would expire.
    let succeeded = events(&app, &owner, "job.succeeded").await;
    assert!(succeeded[0]["outputs"][0].get("url").is_none());

    // The link fetches the image ComfyUI made (512x512), as a client would.
    moto.authentication(false).await;
    let (status, content_type, body) = moto.get(url).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "image/png");
    assert_eq!(png_dimensions(&body), (512, 512));
    assert_eq!(body.len() as u64, output["size"].as_u64().unwrap());

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the binary exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
