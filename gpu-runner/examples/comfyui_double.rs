//! The ComfyUI double as a program, for trying Tollgate without a GPU: it replays the run
//! recorded from a real ComfyUI in `testdata/comfyui/success.json` whenever that run's
//! workflow is submitted to it, and serves on loopback until Ctrl-C. It writes the workflow
//! to the file named, for submitting as a job, and prints its address for the gpu-runner.
//!
//! ```sh
//! cargo run -p gpu-runner --example comfyui_double -- workflow.json
//! ```

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use support::comfyui_double::{ComfyDouble, Faults, Run};

#[tokio::main]
async fn main() {
    let workflow_file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "workflow.json".into());
    let run = Run::load("success.json", 0);
    let job = serde_json::json!({ "workflow": run.workflow });
    std::fs::write(&workflow_file, serde_json::to_vec_pretty(&job).unwrap())
        .unwrap_or_else(|error| panic!("{workflow_file}: {error}"));
    let double = ComfyDouble::start(run, "success.json", Faults::default()).await;
    println!("ComfyUI double on {}", double.url());
    println!("the job it replays, as POST /api/v1/jobs takes it: {workflow_file}");
    tokio::signal::ctrl_c()
        .await
        .expect("Ctrl-C can be awaited");
}
