//! What a job holds and how long it may run: every core sampler is priced, a workflow that
//! cannot be priced holds its whole time limit, and a job never runs past what it holds.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{Runner, default_worker, pool, queued, sdxl, submit, tenant};

/// ComfyUI's core custom-sampling graph: `SamplerCustomAdvanced` fed by a `BasicScheduler`
/// with `steps`, on a 1024² latent.
fn sampler_custom_advanced(steps: u64) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "cfg": 7.0}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": steps, "denoise": 1.0}},
        "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["11", 0], "sampler": ["12", 0],
                                                                "sigmas": ["13", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "out"}},
    })
}

#[tokio::test]
async fn a_3000_step_sampler_custom_job_holds_what_3000_steps_cost() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1_000).await;
    let before = pool(&app, &owner).await;

    let job = queued(
        &app,
        &owner,
        json!({ "workflow": sampler_custom_advanced(3000) }),
    )
    .await;

    // 1 Mpx × 3000 steps = 3000 GPU-seconds: 1 + 300 credits.
    assert_eq!(job["estimated_cost"], 301);
    assert_eq!(pool(&app, &owner).await.2, before.2 + 301);
}

#[tokio::test]
async fn sampler_custom_reads_the_steps_of_its_scheduler() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1_000).await;
    let mut workflow = sampler_custom_advanced(400);
    workflow["3"] = json!({"class_type": "SamplerCustom", "inputs": {
        "model": ["4", 0], "add_noise": true, "noise_seed": 1, "cfg": 7.0, "positive": ["6", 0],
        "negative": ["6", 0], "sampler": ["12", 0], "sigmas": ["13", 0], "latent_image": ["5", 0]}});

    let job = queued(&app, &owner, json!({ "workflow": workflow })).await;

    assert_eq!(job["estimated_cost"], 1 + 40);
}

#[tokio::test]
async fn a_workflow_that_cannot_be_priced_holds_its_whole_time_limit() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1_000).await;
    let mut workflow = sdxl(512, 20);
    workflow["20"] = json!({"class_type": "KSampler (Efficient)", "inputs": {"steps": 5000}});
    let before = pool(&app, &owner).await;

    let job = queued(
        &app,
        &owner,
        json!({ "workflow": workflow, "time_limit_seconds": 900 }),
    )
    .await;

    // 900 GPU-seconds at most: 1 + 90 credits.
    assert_eq!(job["estimated_cost"], 91);
    assert_eq!(job["time_limit_seconds"], 900);
    assert_eq!(pool(&app, &owner).await.2, before.2 + 91);
}

#[tokio::test]
async fn steps_behind_a_link_tollgate_cannot_follow_are_held_at_the_worst_case() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1_000).await;
    let mut workflow = sdxl(512, 20);
    workflow["3"]["inputs"]["steps"] = json!(["20", 0]);
    workflow["20"] = json!({"class_type": "CM_IntBinaryOperation", "inputs": {"a": 3000, "b": 1}});

    let job = queued(&app, &owner, json!({ "workflow": workflow })).await;

    // The default time limit, 600 s: 1 + 60.
    assert_eq!(job["estimated_cost"], 61);
}

#[tokio::test]
async fn an_unpriced_workflow_that_does_not_fit_is_refused_before_it_queues() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 50).await;
    let mut workflow = sdxl(512, 20);
    workflow["20"] = json!({"class_type": "SomeCustomSampler", "inputs": {}});

    let response = submit(&app, &owner, &json!({ "workflow": workflow }), None).await;

    expect_error(
        response,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(pool(&app, &owner).await.2, 0);
}

#[tokio::test]
async fn a_priced_job_runs_no_longer_than_its_hold_pays_for() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1_000).await;

    // 512² × 20 steps: 5 GPU-seconds, a hold of 2 that may settle at 3 = 20 GPU-seconds.
    let job = queued(
        &app,
        &owner,
        json!({ "workflow": sdxl(512, 20), "time_limit_seconds": 3600 }),
    )
    .await;
    assert_eq!(job["estimated_cost"], 2);
    assert_eq!(job["time_limit_seconds"], 20);

    // The runner is handed that limit, so it stops the work where the hold ends.
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let claimed = runner.claim(&app, 24_576).await.expect("a job to claim");
    assert_eq!(claimed["time_limit_seconds"], 20);
    // Whatever the runner reports, the charge stays within what was held plus the bound.
    let finished = runner.finish(&app, &claimed, "succeeded", 5_000).await;
    expect_status(finished, StatusCode::OK).await;
    let (_, used, reserved) = pool(&app, &owner).await;
    assert_eq!((used, reserved), (3, 0));
}
