//! Reading a ComfyUI workflow in API format (`{"<node id>": {"class_type", "inputs"}}`) before
//! it is queued: its shape is checked, and the known node types tell what the plan cares
//! about (sizes, batch, models) and what the job will cost.
//!
//! **Cost** (credits): GPU time is priced at 1 credit per started 10 GPU-seconds plus 1 per
//! job. The estimate assumes one GPU-second per megapixel, per image, per sampling step:
//! `estimate = 1 + ceil(ceil(Mpx × batch × steps) / 10)`, where `Mpx` is the largest image
//! size in the workflow, `batch` its largest batch and `steps` the sum of the samplers'
//! steps (at least 1). A finished job is charged `1 + ceil(gpu_seconds / 10)` (see
//! [`actual_cost`]), within the credits module's overage bound over the estimate.
//!
//! **VRAM** (MB): the loaded models' base (SD 1.5 checkpoint 4096, SDXL 6144, a UNET 12288,
//! anything else 4096; each LoRA 256) plus 1024 per megapixel-image; 512 without a model.

use serde_json::{Map, Value as Json, json};

use crate::{ApiError, error::ApiResult, quota::plan_limits::WorkRequest};

/// At most this many nodes in one workflow.
pub const MAX_NODES: usize = 1000;

/// What the inspection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub work: WorkRequest,
    pub steps: u64,
    pub estimated_cost: i64,
}

fn invalid(message: impl Into<String>, node: Option<&str>) -> ApiError {
    ApiError::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
        message,
    )
    .with_details(json!({ "node": node }))
}

/// A positive whole-number input of a known node, when it is a literal (not a link).
fn whole(node_id: &str, inputs: &Map<String, Json>, name: &str) -> ApiResult<Option<u64>> {
    match inputs.get(name) {
        None | Some(Json::Array(_)) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|value| (1..=1_000_000).contains(value))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    format!(
                        "input {name} of node {node_id} must be a whole number from 1 to 1000000"
                    ),
                    Some(node_id),
                )
            }),
    }
}

fn text<'a>(
    node_id: &str,
    inputs: &'a Map<String, Json>,
    name: &str,
) -> ApiResult<Option<&'a str>> {
    match inputs.get(name) {
        None | Some(Json::Array(_)) => Ok(None),
        Some(Json::String(text)) if !text.is_empty() => Ok(Some(text)),
        Some(_) => Err(invalid(
            format!("input {name} of node {node_id} must be a file name"),
            Some(node_id),
        )),
    }
}

/// Checks the workflow's shape and reads what the plan and the price need.
pub fn inspect(workflow: &Json) -> ApiResult<Inspection> {
    let nodes = workflow
        .as_object()
        .ok_or_else(|| invalid("the workflow must be an object of node id to node", None))?;
    if nodes.is_empty() {
        return Err(invalid("the workflow has no nodes", None));
    }
    if nodes.len() > MAX_NODES {
        return Err(invalid(
            format!("the workflow has more than {MAX_NODES} nodes"),
            None,
        ));
    }
    let (mut width, mut height, mut batch, mut steps) = (0u64, 0u64, 0u64, 0u64);
    let mut vram_base = 0u64;
    let mut models = Vec::new();
    for (id, node) in nodes {
        let node = node
            .as_object()
            .ok_or_else(|| invalid(format!("node {id} must be an object"), Some(id)))?;
        let class = node
            .get("class_type")
            .and_then(Json::as_str)
            .filter(|class| !class.is_empty())
            .ok_or_else(|| invalid(format!("node {id} has no class_type"), Some(id)))?;
        let empty = Map::new();
        let inputs = match node.get("inputs") {
            None => &empty,
            Some(Json::Object(inputs)) => inputs,
            Some(_) => {
                return Err(invalid(
                    format!("inputs of node {id} must be an object"),
                    Some(id),
                ));
            }
        };
        for (name, value) in inputs {
            if let Json::Array(link) = value {
                let target = match link.as_slice() {
                    [Json::String(target), Json::Number(slot)] if slot.is_u64() => target,
                    _ => {
                        return Err(invalid(
                            format!(
                                "input {name} of node {id} is not a link [node id, output index]"
                            ),
                            Some(id),
                        ));
                    }
                };
                if !nodes.contains_key(target) {
                    return Err(invalid(
                        format!("input {name} of node {id} links to missing node {target}"),
                        Some(id),
                    )
                    .with_details(json!({ "node": id, "input": name, "missing": target })));
                }
            }
        }
        match class {
            "EmptyLatentImage" | "EmptyImage" | "EmptySD3LatentImage" => {
                width = width.max(whole(id, inputs, "width")?.unwrap_or(0));
                height = height.max(whole(id, inputs, "height")?.unwrap_or(0));
                batch = batch.max(whole(id, inputs, "batch_size")?.unwrap_or(1));
            }
            "KSampler" | "KSamplerAdvanced" => steps += whole(id, inputs, "steps")?.unwrap_or(1),
            "CheckpointLoaderSimple" => {
                if let Some(name) = text(id, inputs, "ckpt_name")? {
                    let lower = name.to_ascii_lowercase();
                    vram_base += if lower.contains("xl") { 6144 } else { 4096 };
                    models.push(name.to_owned());
                }
            }
            "UNETLoader" => {
                if let Some(name) = text(id, inputs, "unet_name")? {
                    vram_base += 12_288;
                    models.push(name.to_owned());
                }
            }
            "LoraLoader" | "LoraLoaderModelOnly" => {
                if let Some(name) = text(id, inputs, "lora_name")? {
                    vram_base += 256;
                    models.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    let (width, height, batch) = (width.max(1), height.max(1), batch.max(1));
    let steps = steps.max(1);
    let pixel_images = width * height * batch;
    let estimated_gpu_seconds = (pixel_images * steps).div_ceil(1_048_576);
    let vram =
        if vram_base == 0 { 512 } else { vram_base } + (pixel_images * 1024).div_ceil(1_048_576);
    models.sort();
    models.dedup();
    let clamp = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    Ok(Inspection {
        work: WorkRequest {
            width: clamp(width),
            height: clamp(height),
            batch_size: clamp(batch),
            estimated_vram_mb: vram,
            models,
        },
        steps,
        estimated_cost: 1 + i64::try_from(estimated_gpu_seconds.div_ceil(10))
            .unwrap_or(i64::MAX / 2),
    })
}

/// What a finished job is charged for `gpu_seconds` of GPU time.
pub fn actual_cost(gpu_seconds: i64) -> i64 {
    1 + (gpu_seconds.max(0) + 9) / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdxl(width: u64, batch: u64, steps: u64) -> Json {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": 1024, "batch_size": batch}},
            "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "latent_image": ["5", 0], "steps": steps}},
        })
    }

    #[test]
    fn known_nodes_give_sizes_models_cost_and_vram() {
        let found = inspect(&sdxl(1024, 1, 20)).unwrap();
        assert_eq!(found.work.width, 1024);
        assert_eq!(found.work.height, 1024);
        assert_eq!(found.work.batch_size, 1);
        assert_eq!(found.work.models, vec!["sd_xl_base_1.0.safetensors"]);
        assert_eq!(found.work.estimated_vram_mb, 6144 + 1024);
        // 1 Mpx × 1 × 20 steps = 20 GPU-seconds → 1 + 2.
        assert_eq!(found.estimated_cost, 3);
        assert_eq!(inspect(&sdxl(1024, 2, 30)).unwrap().estimated_cost, 1 + 6);
    }

    #[test]
    fn the_recorded_workflow_without_a_model_is_cheap() {
        let workflow = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 2, "color": 0}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        });
        let found = inspect(&workflow).unwrap();
        assert_eq!(found.work.estimated_vram_mb, 512 + 512);
        assert_eq!(found.estimated_cost, 2);
        assert!(found.work.models.is_empty());
    }

    #[test]
    fn malformed_workflows_are_refused_with_the_node() {
        for (workflow, node) in [
            (json!([1, 2]), Json::Null),
            (json!({}), Json::Null),
            (json!({"1": {"inputs": {}}}), json!("1")),
            (json!({"1": "x"}), json!("1")),
            (
                json!({"1": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}}}),
                json!("1"),
            ),
            (
                json!({"1": {"class_type": "SaveImage", "inputs": {"images": ["99"]}}}),
                json!("1"),
            ),
            (
                json!({"1": {"class_type": "EmptyImage", "inputs": {"width": -5}}}),
                json!("1"),
            ),
        ] {
            let error = inspect(&workflow).unwrap_err();
            assert_eq!(
                error.status,
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "{workflow}"
            );
            assert_eq!(error.code, "invalid_workflow");
            assert_eq!(error.details["node"], node, "{workflow}");
        }
    }

    #[test]
    fn actual_cost_matches_the_estimate_for_the_estimated_time() {
        assert_eq!(actual_cost(0), 1);
        assert_eq!(actual_cost(20), 3);
        assert_eq!(actual_cost(21), 4);
    }
}
