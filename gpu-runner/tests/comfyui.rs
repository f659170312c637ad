//! The runner's ComfyUI side against a double replaying recorded ComfyUI 0.8 traffic
//! (`testdata/comfyui/`). No test waits on the clock: the double moves when the runner acts.

mod support;

use std::time::Duration;

use gpu_runner::comfyui::ComfyClient;
use gpu_runner::execute::{self, Failure, Job, Options, Outcome, Progress, Report, StopReason};
use gpu_runner::store::LocalDirStore;
use serde_json::Value;
use support::comfyui_double::{ComfyDouble, Faults, ImageSummary, Run, png_dimensions};
use tokio::sync::watch;

/// VRAM in use in the recorded `/system_stats` (vram_total - vram_free of its one device).
const RECORDED_VRAM_USED: u64 = 25_276_502_016 - 23_900_266_496;

fn opts() -> Options {
    Options {
        poll_interval: Duration::from_millis(50),
        poll_interval_no_ws: Duration::from_millis(5),
        interrupt_grace: Duration::from_secs(30),
        max_poll_failures: 5,
        use_websocket: true,
    }
}

struct Harness {
    double: ComfyDouble,
    dir: std::path::PathBuf,
    store: LocalDirStore,
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gpu-runner-test-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Harness {
    async fn new(file: &str, index: usize, faults: Faults) -> Harness {
        let run = Run::load(file, index);
        let double = ComfyDouble::start(run, file, faults).await;
        let dir = temp_dir(file.trim_end_matches(".json"));
        let store = LocalDirStore::new(&dir);
        Harness { double, dir, store }
    }

    fn workflow(file: &str, index: usize) -> Value {
        Run::load(file, index).workflow
    }

    async fn run(
        &self,
        workflow: &Value,
        time_limit: Duration,
        cancel: watch::Receiver<bool>,
        progress: Option<&watch::Sender<Progress>>,
    ) -> Report {
        let client = ComfyClient::new(&self.double.url());
        let job = Job {
            key: "job-1",
            workflow,
            time_limit,
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            execute::execute(&client, &self.store, job, cancel, progress, &opts()),
        )
        .await
        .expect("execute finishes")
    }

    async fn run_simple(&self, workflow: &Value) -> Report {
        let (_tx, rx) = watch::channel(false);
        self.run(workflow, Duration::from_secs(600), rx, None).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn submitted(h: &Harness) -> Value {
    h.double
        .seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/prompt"))
        .expect("a POST /prompt")
        .body
}

#[test]
fn the_double_reads_the_recorded_order() {
    let run = Run::load("success.json", 0);
    let types = run.message_types();
    assert_eq!(types.first().map(String::as_str), Some("status"));
    let tail: Vec<&str> = types
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["execution_success", "status", "executing"]);
    assert!(types.contains(&"execution_cached".to_string()));

    // Recording B streams 64 binary previews (type 1, PNG 1024x1024, 15,766 bytes each).
    let b = Run::load("interrupted.json", 1).message_types();
    assert_eq!(b.iter().filter(|t| *t == "PREVIEW_IMAGE").count(), 64);
    let preview = ImageSummary {
        bytes: Some(15_766),
        width: 1024,
        height: 1024,
        first_pixel: [0x80; 3],
    };
    let png = support::comfyui_double::render_png(&preview);
    assert_eq!((png.len(), png_dimensions(&png)), (15_766, (1024, 1024)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_fetches_the_recorded_png() {
    let h = Harness::new("success.json", 0, Faults::default()).await;
    let wf = Harness::workflow("success.json", 0);
    // The recorded workflow is the handout's example one.
    let (ptx, mut prx) = watch::channel(Progress::default());
    let (_ctx, crx) = watch::channel(false);
    let report = h.run(&wf, Duration::from_secs(600), crx, Some(&ptx)).await;

    let Outcome::Succeeded {
        outputs,
        node_errors,
    } = &report.outcome
    else {
        panic!("{report:?}")
    };
    assert_eq!(node_errors, &serde_json::json!({}));
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(
        (
            out.node_id.as_str(),
            out.filename.as_str(),
            out.subfolder.as_str()
        ),
        ("2", "success_00001_.png", "")
    );
    assert_eq!(out.content_type, "image/png");
    assert_eq!(out.size, 2173, "recorded /view size");
    let bytes = std::fs::read(&out.location).unwrap();
    assert_eq!(bytes.len(), 2173);
    assert_eq!(png_dimensions(&bytes), (512, 512));
    assert!(out.location.ends_with("job-1/success_00001_.png"));
    // execution_start 1795425786975 -> execution_success 1795425787026 (history timestamps).
    assert!(
        (report.gpu_seconds - 0.051).abs() < 1e-9,
        "{}",
        report.gpu_seconds
    );
    assert_eq!(report.peak_vram_bytes, Some(RECORDED_VRAM_USED));
    assert_eq!(report.stop_requested, None);
    assert_eq!(prx.borrow_and_update().percent, 100.0);

    let body = submitted(&h);
    assert_eq!(body["prompt_id"], report.prompt_id.as_str());
    let client_id = body["client_id"].as_str().expect("client_id sent");
    assert!(client_id.starts_with("runner-"));
    let ws_opened = h
        .double
        .seen()
        .iter()
        .any(|s| s.path == format!("/ws?clientId={client_id}"));
    assert!(ws_opened, "followed the prompt on its own socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_id_per_connection() {
    let h = Harness::new("success.json", 0, Faults::default()).await;
    let wf = Harness::workflow("success.json", 0);
    let a = h.run_simple(&wf).await;
    let first = submitted(&h);
    let b = h.run_simple(&wf).await;
    let posts: Vec<Value> = h
        .double
        .seen()
        .into_iter()
        .filter(|s| s.path == "/prompt")
        .map(|s| s.body)
        .collect();
    assert_eq!(posts.len(), 2);
    assert_ne!(posts[0]["client_id"], posts[1]["client_id"]);
    assert_ne!(a.prompt_id, b.prompt_id);
    assert_eq!(first, posts[0]);
    assert!(matches!(b.outcome, Outcome::Succeeded { .. }), "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_run_reports_the_previous_files() {
    let h = Harness::new("cached.json", 1, Faults::default()).await;
    // Run 2 writes nothing; `executed` and history replay run 1's files (256x128, inverted
    // 0x123456). The recording did not /view them, so the double is told what they are.
    for name in ["probe_00001_.png", "probe_00002_.png"] {
        h.double.add_view(
            name,
            "cached",
            ImageSummary {
                bytes: None,
                width: 256,
                height: 128,
                first_pixel: [0xed, 0xcb, 0xa9],
            },
        );
    }
    let wf = Harness::workflow("cached.json", 1);
    let report = h.run_simple(&wf).await;
    let Outcome::Succeeded { outputs, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    let names: Vec<(&str, &str)> = outputs
        .iter()
        .map(|o| (o.subfolder.as_str(), o.filename.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("cached", "probe_00001_.png"),
            ("cached", "probe_00002_.png")
        ]
    );
    for o in outputs {
        assert_eq!(
            png_dimensions(&std::fs::read(&o.location).unwrap()),
            (256, 128)
        );
    }
    // Everything cached: start and success carry the same timestamp.
    assert_eq!(report.gpu_seconds, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_stores_two_outputs_in_their_subfolder() {
    let h = Harness::new("chain.json", 0, Faults::default()).await;
    let wf = Harness::workflow("chain.json", 0);
    let report = h.run_simple(&wf).await;
    let Outcome::Succeeded { outputs, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(outputs.len(), 2);
    for (o, name) in outputs
        .iter()
        .zip(["inverted_00001_.png", "inverted_00002_.png"])
    {
        assert_eq!(
            (
                o.node_id.as_str(),
                o.subfolder.as_str(),
                o.filename.as_str()
            ),
            ("4", "chain", name)
        );
        assert_eq!(o.size, 867);
        assert!(
            o.location.ends_with(&format!("job-1/chain/{name}")),
            "{}",
            o.location
        );
        let bytes = std::fs::read(&o.location).unwrap();
        assert_eq!(png_dimensions(&bytes), (256, 128));
    }
    assert!(
        (report.gpu_seconds - 0.082).abs() < 1e-9,
        "{}",
        report.gpu_seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_workflow_fails_with_the_node_errors() {
    let h = Harness::new("invalid-workflow.json", 0, Faults::default()).await;
    let wf = Harness::workflow("invalid-workflow.json", 0);
    let report = h.run_simple(&wf).await;
    let Outcome::Failed(Failure::Rejected { error, node_errors }) = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(error["type"], "prompt_outputs_failed_validation");
    let e = &node_errors["1"];
    assert_eq!(e["class_type"], "EmptyImage");
    assert_eq!(e["errors"][0]["type"], "required_input_missing");
    assert_eq!(e["errors"][0]["details"], "height");
    assert_eq!(e["dependent_outputs"], serde_json::json!(["2"]));
    assert_eq!(report.gpu_seconds, 0.0);
    // Nothing was queued, so nothing is polled or interrupted.
    assert!(
        !h.double
            .seen()
            .iter()
            .any(|s| s.path.starts_with("/history") || s.path == "/interrupt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_node_class_fails_with_empty_node_errors() {
    let h = Harness::new("invalid-workflow.json", 1, Faults::default()).await;
    let wf = Harness::workflow("invalid-workflow.json", 1);
    let report = h.run_simple(&wf).await;
    let Outcome::Failed(Failure::Rejected { error, node_errors }) = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(error["type"], "invalid_prompt");
    assert_eq!(
        error["message"],
        "Cannot execute because node NoSuchNode does not exist."
    );
    assert_eq!(node_errors, &serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_fail_with_the_execution_error() {
    for (index, node, node_type, exception) in [
        (0, "1", "EmptyImage", "RuntimeError"),
        (1, "2", "SaveImage", "Exception"),
    ] {
        let h = Harness::new("runtime-error.json", index, Faults::default()).await;
        let wf = Harness::workflow("runtime-error.json", index);
        let report = h.run_simple(&wf).await;
        let Outcome::Failed(Failure::Execution {
            node_id,
            node_type: t,
            exception_type,
            exception_message,
            traceback,
        }) = &report.outcome
        else {
            panic!("{report:?}")
        };
        assert_eq!(
            (node_id.as_str(), t.as_str(), exception_type.as_str()),
            (node, node_type, exception)
        );
        assert!(!exception_message.is_empty());
        assert!(!traceback.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limit_interrupts_and_the_interrupt_lands_late() {
    let h = Harness::new("interrupted.json", 0, Faults::default()).await;
    let wf = Harness::workflow("interrupted.json", 0);
    let (_ctx, crx) = watch::channel(false);
    // The double holds everything after node 2 starts until the runner interrupts, as the
    // recording did (the interrupt landed when node 3 started).
    let report = h.run(&wf, Duration::from_millis(100), crx, None).await;
    assert_eq!(report.stop_requested, Some(StopReason::TimeLimit));
    assert_eq!(
        report.outcome,
        Outcome::Interrupted {
            reason: Some(StopReason::TimeLimit),
            node_id: Some("3".into()),
            confirmed: true
        }
    );
    // 1795425789193 -> 1795425792710: the recorded run time, interrupt latency included.
    assert!(
        (report.gpu_seconds - 3.517).abs() < 1e-9,
        "{}",
        report.gpu_seconds
    );
    let interrupts: Vec<Value> = h
        .double
        .seen()
        .into_iter()
        .filter(|s| s.path == "/interrupt")
        .map(|s| s.body)
        .collect();
    assert_eq!(
        interrupts,
        [serde_json::json!({ "prompt_id": report.prompt_id })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_after_the_end_leaves_the_history_verdict() {
    // Recording B: the interrupt was handled after the prompt had finished: success.
    let h = Harness::new("interrupted.json", 1, Faults::default()).await;
    let wf = Harness::workflow("interrupted.json", 1);
    let (_ctx, crx) = watch::channel(false);
    let report = h.run(&wf, Duration::from_millis(100), crx, None).await;
    assert_eq!(report.stop_requested, Some(StopReason::TimeLimit));
    // SaveImageWebsocket streams its images; nothing lands in the output folder.
    assert!(
        matches!(&report.outcome, Outcome::Succeeded { outputs, .. } if outputs.is_empty()),
        "{report:?}"
    );
    assert!(
        (report.gpu_seconds - 1.364).abs() < 1e-9,
        "{}",
        report.gpu_seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_interrupts_the_running_prompt() {
    let h = Harness::new("interrupted.json", 0, Faults::default()).await;
    let wf = Harness::workflow("interrupted.json", 0);
    let (ctx, crx) = watch::channel(false);
    let (ptx, mut prx) = watch::channel(Progress::default());
    let run = h.run(&wf, Duration::from_secs(3600), crx, Some(&ptx));
    let cancel = async {
        // Cancel once the runner has seen node 2 start.
        prx.wait_for(|p| p.node.as_deref() == Some("2"))
            .await
            .unwrap();
        let seen = prx.borrow().clone();
        ctx.send(true).unwrap();
        seen
    };
    let (report, at_cancel) = tokio::join!(run, cancel);
    assert!(
        at_cancel.percent > 0.0 && at_cancel.percent < 100.0,
        "{at_cancel:?}"
    );
    assert_eq!(
        report.outcome,
        Outcome::Interrupted {
            reason: Some(StopReason::Cancelled),
            node_id: Some("3".into()),
            confirmed: true
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_falls_back_to_history() {
    // The socket closes after execution_start; the rest goes to nobody.
    let faults = Faults {
        drop_ws_after: Some(3),
        ..Faults::default()
    };
    let h = Harness::new("success.json", 0, faults).await;
    let wf = Harness::workflow("success.json", 0);
    let report = h.run_simple(&wf).await;
    let Outcome::Succeeded { outputs, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].size, 2173);
    assert!(
        h.double
            .seen()
            .iter()
            .any(|s| s.path == format!("/history/{}", report.prompt_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_socket_the_prompt_goes_without_client_id_and_is_polled() {
    // no-client-id.json: the prompt had no client_id, the first history poll answered {}.
    let faults = Faults {
        refuse_ws: true,
        ..Faults::default()
    };
    let h = Harness::new("no-client-id.json", 0, faults).await;
    let wf = Harness::workflow("no-client-id.json", 0);
    // EmptyImage 128x128 of 0x445566; the recording read only its history, not the file.
    h.double.add_view(
        "noclient_00001_.png",
        "",
        ImageSummary {
            bytes: None,
            width: 128,
            height: 128,
            first_pixel: [0x44, 0x55, 0x66],
        },
    );
    let report = h.run_simple(&wf).await;
    assert!(submitted(&h).get("client_id").is_none());
    let Outcome::Succeeded { outputs, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].filename, "noclient_00001_.png");
    let bytes = std::fs::read(&outputs[0].location).unwrap();
    assert_eq!(png_dimensions(&bytes), (128, 128));
    let polls = h
        .double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/history/"))
        .count();
    assert!(
        polls >= 2,
        "polled through the recorded empty answer ({polls})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyui_down_is_unavailable_and_submits_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ComfyClient::new(&format!("http://{addr}"));
    let dir = temp_dir("down");
    let store = LocalDirStore::new(&dir);
    let (_ctx, crx) = watch::channel(false);
    let wf = Harness::workflow("success.json", 0);
    let job = Job {
        key: "job-1",
        workflow: &wf,
        time_limit: Duration::from_secs(60),
    };
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        execute::execute(&client, &store, job, crx, None, &opts()),
    )
    .await
    .unwrap();
    assert!(
        matches!(report.outcome, Outcome::Unavailable(_)),
        "{report:?}"
    );
    assert!(client.system_stats().await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_stats_reads_version_and_vram() {
    let h = Harness::new("success.json", 0, Faults::default()).await;
    let stats = ComfyClient::new(&h.double.url())
        .system_stats()
        .await
        .unwrap();
    assert_eq!(stats.system.comfyui_version, "0.8.0");
    assert_eq!(stats.devices.len(), 1);
    assert_eq!(stats.devices[0].name, "cpu");
    assert_eq!(stats.vram_used(), Some(RECORDED_VRAM_USED));
    assert_eq!(stats.vram_free(), Some(23_900_266_496));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_before_start_submits_nothing() {
    let h = Harness::new("success.json", 0, Faults::default()).await;
    let wf = Harness::workflow("success.json", 0);
    let (_ctx, crx) = watch::channel(true);
    let report = h.run(&wf, Duration::from_secs(600), crx, None).await;
    assert_eq!(
        report.outcome,
        Outcome::Withdrawn {
            reason: StopReason::Cancelled
        }
    );
    assert!(!h.double.seen().iter().any(|s| s.path == "/prompt"));
}

/// `gpu-runner --check` against the double, and against a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_gpu_vram_and_version() {
    let h = Harness::new("success.json", 0, Faults::default()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let run = |urls: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
                .args(["--check", "--comfyui", &urls])
                .env_remove("GPU_RUNNER_COMFYUI_URLS")
                .output()
                .unwrap()
        })
    };
    let ok = run(h.double.url()).await.unwrap();
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("ComfyUI 0.8.0"), "{text}");
    assert!(
        text.contains("device cpu (cpu): VRAM 23.5 GiB total, 22.3 GiB free"),
        "{text}"
    );

    let bad = run(format!("{},http://{closed}", h.double.url()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("FAIL http://{closed}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_valid_prompt_succeeds_and_keeps_the_skipped_branch_errors() {
    // 200 with node_errors: output 4 is skipped, output 2 runs.
    let h = Harness::new("invalid-workflow.json", 9, Faults::default()).await;
    h.double.add_view(
        "partial_00001_.png",
        "",
        ImageSummary {
            bytes: None,
            width: 64,
            height: 64,
            first_pixel: [0, 0, 0],
        },
    );
    let wf = Harness::workflow("invalid-workflow.json", 9);
    let report = h.run_simple(&wf).await;
    let Outcome::Succeeded {
        outputs,
        node_errors,
    } = &report.outcome
    else {
        panic!("{report:?}")
    };
    assert_eq!(
        node_errors["3"]["errors"][0]["type"],
        "required_input_missing"
    );
    assert_eq!(
        node_errors["3"]["dependent_outputs"],
        serde_json::json!(["4"])
    );
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        (outputs[0].node_id.as_str(), outputs[0].filename.as_str()),
        ("2", "partial_00001_.png")
    );
}

/// A harness whose ComfyUI is busy with another client's prompt (the slow recorded chain,
/// held until an interrupt) when the job's prompt arrives, so the job waits behind it.
async fn busy_harness(faults: Faults) -> Harness {
    let faults = Faults {
        busy_with: Some(Run::load("interrupted.json", 0)),
        ..faults
    };
    let double = ComfyDouble::start(Run::load("success.json", 0), "success.json", faults).await;
    let dir = temp_dir("busy");
    let store = LocalDirStore::new(&dir);
    Harness { double, dir, store }
}

/// Waits until the double holds one prompt waiting behind the running one.
async fn until_waiting(double: &ComfyDouble) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let (Some(_), pending) = double.queue()
            && let [waiting] = pending.as_slice()
        {
            return waiting.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no prompt came to wait in the queue"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Once the runner has stopped `prompt`, the other client's prompt ends, and ComfyUI takes
/// whatever waits behind it.
async fn after_the_stop_the_other_prompt_ends(double: &ComfyDouble, prompt: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stop = serde_json::json!({ "prompt_id": prompt });
    while !double
        .seen()
        .iter()
        .any(|s| s.path == "/interrupt" && s.body == stop)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never stopped its prompt"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ComfyClient::new(&double.url())
        .interrupt("someone-else")
        .await
        .unwrap();
}

fn requests(h: &Harness, method: &str, path: &str) -> Vec<Value> {
    h.double
        .seen()
        .into_iter()
        .filter(|s| s.method == method && s.path == path)
        .map(|s| s.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_queued_behind_another_prompt_deletes_it_and_it_never_runs() {
    let h = busy_harness(Faults::default()).await;
    let wf = Harness::workflow("success.json", 0);
    let (ctx, crx) = watch::channel(false);
    let run = h.run(&wf, Duration::from_secs(600), crx, None);
    let cancel = async {
        let waiting = until_waiting(&h.double).await;
        ctx.send(true).unwrap();
        after_the_stop_the_other_prompt_ends(&h.double, &waiting).await;
        waiting
    };
    let (report, waiting) = tokio::join!(run, cancel);
    assert_eq!(waiting, report.prompt_id);
    assert_eq!(
        report.outcome,
        Outcome::Withdrawn {
            reason: StopReason::Cancelled
        }
    );
    assert_eq!(report.gpu_seconds, 0.0);
    assert_eq!(
        requests(&h, "POST", "/queue"),
        [serde_json::json!({ "delete": [report.prompt_id] })]
    );
    // Ours is gone: when the other prompt ended nothing ran after it, and ours never
    // gets a history.
    assert_eq!(h.double.queue(), (None, vec![]));
    let client = ComfyClient::new(&h.double.url());
    assert!(client.history(&report.prompt_id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_while_queued_behind_another_prompt_withdraws_it() {
    let h = busy_harness(Faults::default()).await;
    let wf = Harness::workflow("success.json", 0);
    let (_ctx, crx) = watch::channel(false);
    let run = h.run(&wf, Duration::from_millis(200), crx, None);
    let other_ends = async {
        let waiting = until_waiting(&h.double).await;
        after_the_stop_the_other_prompt_ends(&h.double, &waiting).await;
    };
    let (report, ()) = tokio::join!(run, other_ends);
    assert_eq!(report.stop_requested, Some(StopReason::TimeLimit));
    assert_eq!(
        report.outcome,
        Outcome::Withdrawn {
            reason: StopReason::TimeLimit
        }
    );
    assert_eq!(report.gpu_seconds, 0.0);
    // Deleted from the queue: when the other prompt ended, nothing ran after it.
    assert_eq!(h.double.queue(), (None, vec![]));
    let client = ComfyClient::new(&h.double.url());
    assert!(client.history(&report.prompt_id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_lost_as_the_prompt_starts_is_sent_again() {
    // ComfyUI clears its interrupt flag when a prompt starts: the first interrupt is lost.
    let h = Harness::new(
        "interrupted.json",
        0,
        Faults {
            interrupts_lost: 1,
            ..Faults::default()
        },
    )
    .await;
    let wf = Harness::workflow("interrupted.json", 0);
    let (ctx, crx) = watch::channel(false);
    let (ptx, mut prx) = watch::channel(Progress::default());
    let run = h.run(&wf, Duration::from_secs(3600), crx, Some(&ptx));
    let cancel = async {
        prx.wait_for(|p| p.node.as_deref() == Some("2"))
            .await
            .unwrap();
        ctx.send(true).unwrap();
    };
    let (report, ()) = tokio::join!(run, cancel);
    assert_eq!(
        report.outcome,
        Outcome::Interrupted {
            reason: Some(StopReason::Cancelled),
            node_id: Some("3".into()),
            confirmed: true
        }
    );
    let interrupts = requests(&h, "POST", "/interrupt");
    assert_eq!(
        interrupts,
        [
            serde_json::json!({ "prompt_id": report.prompt_id }),
            serde_json::json!({ "prompt_id": report.prompt_id })
        ]
    );
}

/// `queue-ops.json`: A runs while B, C and D wait; an interrupt aimed at a waiting prompt is
/// ignored, a deleted prompt leaves the queue and never gets a history, and the double
/// lists its queue in ComfyUI's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_queues_deletes_and_ignores_interrupts_as_recorded() {
    let runs: Vec<Run> = (0..4).map(|i| Run::load("queue-ops.json", i)).collect();
    let workflows: Vec<Value> = runs.iter().map(|r| r.workflow.clone()).collect();
    // A holds after its execution_start, as its slow chain would.
    let faults = Faults {
        hold_after: Some(2),
        ..Faults::default()
    };
    let double = ComfyDouble::with_runs(runs, "queue-ops.json", faults).await;
    let client = ComfyClient::new(&double.url());
    for (workflow, id) in workflows.iter().zip(["A", "B", "C", "D"]) {
        assert!(matches!(
            client.submit(workflow, id, None).await.unwrap(),
            gpu_runner::comfyui::Submitted::Accepted { .. }
        ));
    }
    let queue = client.queue().await.unwrap();
    assert_eq!(
        (queue.running, queue.pending),
        (
            vec!["A".to_string()],
            vec!["B".into(), "C".into(), "D".into()]
        )
    );

    client.interrupt("B").await.unwrap();
    assert_eq!(
        double.queue(),
        (Some("A".into()), vec!["B".into(), "C".into(), "D".into()])
    );
    client.delete_pending(&["B".to_string()]).await.unwrap();
    assert_eq!(
        double.queue(),
        (Some("A".into()), vec!["C".into(), "D".into()])
    );
    assert!(client.history("B").await.unwrap().is_none());

    // Each item as ComfyUI lists it: [number, prompt_id, prompt, extra_data, outputs].
    let raw: Value = reqwest::get(format!("{}/queue", double.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded = support::comfyui_double::scenario("queue-ops.json")
        .into_iter()
        .find(|e| {
            e["kind"] == "http"
                && e["request"]["method"] == "GET"
                && e["request"]["path"] == "/queue"
        })
        .unwrap();
    let shape = |item: &Value| -> Vec<&'static str> {
        item.as_array()
            .unwrap()
            .iter()
            .map(|v| match v {
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Object(_) => "object",
                Value::Array(_) => "array",
                _ => "other",
            })
            .collect()
    };
    for key in ["queue_running", "queue_pending"] {
        assert_eq!(
            shape(&raw[key][0]),
            shape(&recorded["response"]["body"][key][0]),
            "{key}"
        );
    }
    assert_eq!(raw["queue_running"][0][2], workflows[0]);
}
