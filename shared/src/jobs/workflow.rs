//! Reading a ComfyUI workflow in API format (`{"<node id>": {"class_type", "inputs"}}`) before
//! it is queued: its shape is checked, and the known node types tell what the plan cares
//! about (sizes, batch, models) and what the job will cost.
//!
//! **Cost** (credits): GPU time is priced at 1 credit per started 10 GPU-seconds plus 1 per
//! job. The estimate assumes one GPU-second per megapixel, per image or frame, per sampling
//! step: `estimate = 1 + ceil(ceil(Mpx × batch × frames × steps) / 10)`, where `Mpx` is the
//! largest image size in the workflow (grown by any upscale in it), `batch` its largest
//! batch (times any batch repeat), `frames` its longest video and `steps` the sum of every
//! sampler's steps: `KSampler` and `KSamplerAdvanced` name theirs, `SamplerCustom` and
//! `SamplerCustomAdvanced` take the steps of the scheduler node their `sigmas` come from
//! (through any sigma splits or flips). Whole-number inputs may be literals or links to a
//! `PrimitiveInt`. A finished job is charged `1 + ceil(gpu_seconds / 10)` (see
//! [`actual_cost`]).
//!
//! **What cannot be priced is held at its worst case.** A node Tollgate does not know (a
//! custom node may sample, upscale or loop), a sampler whose steps or a size whose value
//! come through a link Tollgate cannot follow, or an adaptive sampler: the job then holds
//! what its whole time limit costs ([`price`]), so a job can never run on credits it did
//! not hold; naming a shorter `time_limit_seconds` holds less.
//!
//! **The work never outruns what is held.** A priced job may run only as long as its hold
//! pays for (the hold plus the settle's overage bound, see [`price`]); the runner stops it
//! there like any time limit. So an actual cost far above the estimate is never given away:
//! the job stops when the credits it holds are used up.
//!
//! **VRAM** (MB): the loaded models' base (SD 1.5 checkpoint 4096, SDXL 6144, a UNET 12288,
//! anything else 4096; each LoRA 256) plus 1024 per megapixel-image; 512 without a model.

use serde_json::{Map, Value as Json, json};

use crate::{
    ApiError,
    credits::{MAX_AMOUNT, reservations::SETTLE_OVERAGE_PERCENT},
    error::ApiResult,
    quota::plan_limits::WorkRequest,
};

/// At most this many nodes in one workflow.
pub const MAX_NODES: usize = 1000;

/// What the inspection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub work: WorkRequest,
    pub steps: u64,
    /// The credits the job is expected to cost; `None` when the workflow holds something
    /// that cannot be priced (`unpriced` says what).
    pub estimated_cost: Option<i64>,
    pub unpriced: Option<String>,
}

/// What a job holds and how long it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub hold: i64,
    pub time_limit_seconds: i64,
}

/// The hold and the effective time limit of a job asking for `time_limit_seconds`: a priced
/// workflow holds its estimate and runs at most as long as that hold pays for; one that
/// cannot be priced holds the cost of its whole time limit.
pub fn price(inspection: &Inspection, time_limit_seconds: i64) -> Price {
    match inspection.estimated_cost {
        Some(estimate) => Price {
            hold: estimate,
            time_limit_seconds: time_limit_seconds.min(paid_seconds(estimate)),
        },
        None => Price {
            hold: actual_cost(time_limit_seconds),
            time_limit_seconds,
        },
    }
}

/// The GPU-seconds a hold pays for: the most a settle may charge for it (the hold plus
/// the overage bound), turned back into time at the price of [`actual_cost`].
fn paid_seconds(hold: i64) -> i64 {
    let chargeable = hold.saturating_add((hold.saturating_mul(SETTLE_OVERAGE_PERCENT) + 99) / 100);
    chargeable.saturating_sub(1).saturating_mul(10)
}

/// Core nodes that sample: their steps are the workflow's cost.
const STEP_SAMPLERS: [&str; 2] = ["KSampler", "KSamplerAdvanced"];
const SIGMA_SAMPLERS: [&str; 2] = ["SamplerCustom", "SamplerCustomAdvanced"];

/// Core scheduler nodes: they make `steps + 1` sigmas, one sampling step each.
const SCHEDULERS: [&str; 10] = [
    "BasicScheduler",
    "KarrasScheduler",
    "ExponentialScheduler",
    "PolyexponentialScheduler",
    "LaplaceScheduler",
    "VPScheduler",
    "BetaSamplingScheduler",
    "SDTurboScheduler",
    "AlignYourStepsScheduler",
    "GITSScheduler",
];

/// Core nodes that pass sigmas on without adding steps (a split keeps at most all of them).
const SIGMA_PASSES: [&str; 4] = [
    "SplitSigmas",
    "SplitSigmasDenoise",
    "FlipSigmas",
    "SetFirstSigma",
];

/// Core nodes that make an image, latent or video of a literal size.
const SIZE_NODES: [&str; 6] = [
    "EmptyLatentImage",
    "EmptyImage",
    "EmptySD3LatentImage",
    "EmptyHunyuanLatentVideo",
    "LatentUpscale",
    "ImageScale",
];

/// Core nodes that cost no sampling of their own: loaders, conditioning, encoders and
/// decoders, guiders, noise, sampler choices, masks and savers.
const FREE_NODES: [&str; 56] = [
    "CheckpointLoaderSimple",
    "CheckpointLoader",
    "UNETLoader",
    "VAELoader",
    "CLIPLoader",
    "DualCLIPLoader",
    "LoraLoader",
    "LoraLoaderModelOnly",
    "ControlNetLoader",
    "UpscaleModelLoader",
    "CLIPVisionLoader",
    "StyleModelLoader",
    "CLIPTextEncode",
    "CLIPTextEncodeSDXL",
    "CLIPTextEncodeFlux",
    "CLIPSetLastLayer",
    "CLIPVisionEncode",
    "ConditioningCombine",
    "ConditioningSetArea",
    "ConditioningZeroOut",
    "ControlNetApply",
    "ControlNetApplyAdvanced",
    "StyleModelApply",
    "FluxGuidance",
    "InpaintModelConditioning",
    "ModelSamplingDiscrete",
    "ModelSamplingSD3",
    "ModelSamplingFlux",
    "BasicGuider",
    "CFGGuider",
    "DualCFGGuider",
    "RandomNoise",
    "DisableNoise",
    "KSamplerSelect",
    "VAEDecode",
    "VAEEncode",
    "VAEDecodeTiled",
    "VAEEncodeForInpaint",
    "SetLatentNoiseMask",
    "LoadImage",
    "LoadImageMask",
    "ImageToMask",
    "MaskToImage",
    "ImageInvert",
    "SaveImage",
    "PreviewImage",
    "SaveAnimatedWEBP",
    "SaveAnimatedPNG",
    "SaveWEBM",
    "SaveVideo",
    "PrimitiveInt",
    "PrimitiveFloat",
    "PrimitiveString",
    "PrimitiveBoolean",
    "SolidMask",
    // Ships with ComfyUI itself (custom_nodes/websocket_image_save.py): a saver.
    "SaveImageWebsocket",
];

/// How many times a side grows through `ImageUpscaleWithModel`: the common upscale models
/// are ×4, and a larger one is only under-estimated if it is then sampled again.
const MODEL_UPSCALE_SIDE: f64 = 4.0;

fn invalid(message: impl Into<String>, node: Option<&str>) -> ApiError {
    ApiError::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
        message,
    )
    .with_details(json!({ "node": node }))
}

/// A whole-number input as far as the workflow tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    Absent,
    Value(u64),
    /// A link to something other than a literal `PrimitiveInt`.
    Unknown,
}

type Nodes = Map<String, Json>;

fn inputs_of<'a>(nodes: &'a Nodes, node_id: &str) -> Option<&'a Map<String, Json>> {
    nodes.get(node_id)?.get("inputs")?.as_object()
}

fn class_of<'a>(nodes: &'a Nodes, node_id: &str) -> Option<&'a str> {
    nodes.get(node_id)?.get("class_type")?.as_str()
}

fn linked_node(value: &Json) -> Option<&str> {
    value.as_array()?.first()?.as_str()
}

fn literal_whole(node_id: &str, name: &str, value: &Json) -> ApiResult<u64> {
    value
        .as_u64()
        .filter(|value| (1..=1_000_000).contains(value))
        .ok_or_else(|| {
            invalid(
                format!("input {name} of node {node_id} must be a whole number from 1 to 1000000"),
                Some(node_id),
            )
        })
}

/// A positive whole-number input of a known node: a literal, or a link to a `PrimitiveInt`
/// with a literal value.
fn whole(nodes: &Nodes, node_id: &str, name: &str) -> ApiResult<Whole> {
    let Some(value) = inputs_of(nodes, node_id).and_then(|inputs| inputs.get(name)) else {
        return Ok(Whole::Absent);
    };
    let Some(source) = linked_node(value) else {
        return literal_whole(node_id, name, value).map(Whole::Value);
    };
    match (
        class_of(nodes, source),
        inputs_of(nodes, source).and_then(|inputs| inputs.get("value")),
    ) {
        (Some("PrimitiveInt"), Some(literal)) if !literal.is_array() => {
            literal_whole(source, "value", literal).map(Whole::Value)
        }
        _ => Ok(Whole::Unknown),
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

/// The sampling steps the sigmas of `node_id` stand for, following sigma passes back to
/// their scheduler; `None` when they come from anything else.
fn sigma_steps(nodes: &Nodes, node_id: &str) -> ApiResult<Option<u64>> {
    let mut current = node_id;
    for _ in 0..MAX_NODES {
        let Some(source) = inputs_of(nodes, current)
            .and_then(|inputs| inputs.get("sigmas"))
            .and_then(linked_node)
        else {
            return Ok(None);
        };
        let class = class_of(nodes, source).unwrap_or_default();
        if SCHEDULERS.contains(&class) {
            return Ok(match whole(nodes, source, "steps")? {
                Whole::Value(steps) => Some(steps),
                Whole::Absent | Whole::Unknown => None,
            });
        }
        if !SIGMA_PASSES.contains(&class) {
            return Ok(None);
        }
        current = source;
    }
    Ok(None)
}

/// Checks that every node is `{"class_type", "inputs"}` and every link names a node.
fn check_shape(nodes: &Nodes) -> ApiResult<()> {
    if nodes.is_empty() {
        return Err(invalid("the workflow has no nodes", None));
    }
    if nodes.len() > MAX_NODES {
        return Err(invalid(
            format!("the workflow has more than {MAX_NODES} nodes"),
            None,
        ));
    }
    for (id, node) in nodes {
        let node = node
            .as_object()
            .ok_or_else(|| invalid(format!("node {id} must be an object"), Some(id)))?;
        node.get("class_type")
            .and_then(Json::as_str)
            .filter(|class| !class.is_empty())
            .ok_or_else(|| invalid(format!("node {id} has no class_type"), Some(id)))?;
        let inputs = match node.get("inputs") {
            None => continue,
            Some(Json::Object(inputs)) => inputs,
            Some(_) => {
                return Err(invalid(
                    format!("inputs of node {id} must be an object"),
                    Some(id),
                ));
            }
        };
        for (name, value) in inputs {
            let Json::Array(link) = value else { continue };
            let target = match link.as_slice() {
                [Json::String(target), Json::Number(slot)] if slot.is_u64() => target,
                _ => {
                    return Err(invalid(
                        format!("input {name} of node {id} is not a link [node id, output index]"),
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
    Ok(())
}

/// What the nodes add up to, before it becomes a price.
#[derive(Default)]
struct Tally {
    width: u64,
    height: u64,
    batch: u64,
    frames: u64,
    batch_repeat: u64,
    area_growth: f64,
    steps: u64,
    vram_base: u64,
    models: Vec<String>,
    unpriced: Option<String>,
}

impl Tally {
    fn cannot_price(&mut self, reason: String) {
        self.unpriced.get_or_insert(reason);
    }

    /// Takes a size input: its value when known, and the workflow becomes unpriced when not.
    fn size(&mut self, value: Whole, node_id: &str, name: &str, default: u64) -> u64 {
        match value {
            Whole::Value(value) => value,
            Whole::Absent => default,
            Whole::Unknown => {
                self.cannot_price(format!(
                    "input {name} of node {node_id} comes from a node Tollgate cannot read"
                ));
                default
            }
        }
    }

    fn scale_by(&mut self, node_id: &str, inputs: &Map<String, Json>, side: Option<f64>) {
        let side = side.or_else(|| {
            inputs
                .get("scale_by")
                .and_then(Json::as_f64)
                .filter(|scale| scale.is_finite() && *scale > 0.0 && *scale <= 16.0)
        });
        match side {
            Some(side) => self.area_growth = self.area_growth.max(side * side),
            None => self.cannot_price(format!(
                "the scale_by of node {node_id} is not a literal from 0 to 16"
            )),
        }
    }
}

/// Checks the workflow's shape and reads what the plan and the price need.
pub fn inspect(workflow: &Json) -> ApiResult<Inspection> {
    let nodes = workflow
        .as_object()
        .ok_or_else(|| invalid("the workflow must be an object of node id to node", None))?;
    check_shape(nodes)?;
    let empty = Map::new();
    let mut tally = Tally {
        batch_repeat: 1,
        area_growth: 1.0,
        ..Tally::default()
    };
    for id in nodes.keys() {
        let class = class_of(nodes, id).unwrap_or_default();
        let inputs = inputs_of(nodes, id).unwrap_or(&empty);
        match class {
            _ if SIZE_NODES.contains(&class) => {
                let width = tally.size(whole(nodes, id, "width")?, id, "width", 0);
                let height = tally.size(whole(nodes, id, "height")?, id, "height", 0);
                let batch = tally.size(whole(nodes, id, "batch_size")?, id, "batch_size", 1);
                let frames = tally.size(whole(nodes, id, "length")?, id, "length", 1);
                tally.width = tally.width.max(width);
                tally.height = tally.height.max(height);
                tally.batch = tally.batch.max(batch);
                tally.frames = tally.frames.max(frames);
            }
            "LatentUpscaleBy" | "ImageScaleBy" => tally.scale_by(id, inputs, None),
            "ImageUpscaleWithModel" => tally.scale_by(id, inputs, Some(MODEL_UPSCALE_SIDE)),
            "RepeatLatentBatch" => {
                let amount = tally.size(whole(nodes, id, "amount")?, id, "amount", 1);
                tally.batch_repeat = tally.batch_repeat.saturating_mul(amount);
            }
            _ if STEP_SAMPLERS.contains(&class) => match whole(nodes, id, "steps")? {
                Whole::Value(steps) => tally.steps += steps,
                Whole::Absent | Whole::Unknown => tally.cannot_price(format!(
                    "the steps of sampler node {id} are not a literal or a PrimitiveInt"
                )),
            },
            _ if SIGMA_SAMPLERS.contains(&class) => match sigma_steps(nodes, id)? {
                Some(steps) => tally.steps += steps,
                None => tally.cannot_price(format!(
                    "the sigmas of sampler node {id} do not come from a core scheduler with literal steps"
                )),
            },
            "CheckpointLoaderSimple" | "CheckpointLoader" => {
                if let Some(name) = text(id, inputs, "ckpt_name")? {
                    let lower = name.to_ascii_lowercase();
                    tally.vram_base += if lower.contains("xl") { 6144 } else { 4096 };
                    tally.models.push(name.to_owned());
                }
            }
            "UNETLoader" => {
                if let Some(name) = text(id, inputs, "unet_name")? {
                    tally.vram_base += 12_288;
                    tally.models.push(name.to_owned());
                }
            }
            "LoraLoader" | "LoraLoaderModelOnly" => {
                if let Some(name) = text(id, inputs, "lora_name")? {
                    tally.vram_base += 256;
                    tally.models.push(name.to_owned());
                }
            }
            _ if SCHEDULERS.contains(&class)
                || SIGMA_PASSES.contains(&class)
                || FREE_NODES.contains(&class) => {}
            _ => tally.cannot_price(format!(
                "node {id} ({class}) is not a core node Tollgate can price"
            )),
        }
    }
    Ok(finish(tally))
}

fn finish(mut tally: Tally) -> Inspection {
    let (width, height) = (tally.width.max(1), tally.height.max(1));
    let batch = tally.batch.max(1);
    let steps = tally.steps.max(1);
    let pixel_images = u128::from(width) * u128::from(height) * u128::from(batch);
    // f64 only for the upscale factor, whose inputs are bounded (side ≤ 16).
    let grown = (pixel_images as f64 * tally.area_growth).ceil() as u128;
    let volume = grown
        .saturating_mul(u128::from(tally.batch_repeat.max(1)))
        .saturating_mul(u128::from(tally.frames.max(1)));
    let gpu_seconds = volume.saturating_mul(u128::from(steps)).div_ceil(1_048_576);
    let estimate = gpu_seconds
        .div_ceil(10)
        .saturating_add(1)
        .min(MAX_AMOUNT as u128) as i64;
    let vram = if tally.vram_base == 0 {
        512
    } else {
        tally.vram_base
    } + u64::try_from((pixel_images * 1024).div_ceil(1_048_576)).unwrap_or(u64::MAX / 2);
    tally.models.sort();
    tally.models.dedup();
    let clamp = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    Inspection {
        work: WorkRequest {
            width: clamp(width),
            height: clamp(height),
            batch_size: clamp(batch),
            estimated_vram_mb: vram,
            models: tally.models,
        },
        steps,
        estimated_cost: tally.unpriced.is_none().then_some(estimate),
        unpriced: tally.unpriced,
    }
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
        assert_eq!(found.estimated_cost, Some(3));
        assert_eq!(
            inspect(&sdxl(1024, 2, 30)).unwrap().estimated_cost,
            Some(1 + 6)
        );
    }

    #[test]
    fn the_recorded_workflow_without_a_model_is_cheap() {
        let workflow = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 2, "color": 0}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        });
        let found = inspect(&workflow).unwrap();
        assert_eq!(found.work.estimated_vram_mb, 512 + 512);
        assert_eq!(found.estimated_cost, Some(2));
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

    /// A model, a size and `sampler` (merged in) fed by `scheduler`.
    fn custom(sampler: Json, scheduler: Json) -> Json {
        let mut workflow = json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
            "6": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "7": scheduler,
        });
        workflow["3"] = sampler;
        workflow
    }

    #[test]
    fn sampler_custom_takes_the_steps_of_its_scheduler() {
        let workflow = custom(
            json!({"class_type": "SamplerCustom", "inputs": {"model": ["4", 0], "sampler": ["6", 0], "sigmas": ["7", 0], "latent_image": ["5", 0], "add_noise": true, "noise_seed": 1, "cfg": 7.0}}),
            json!({"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 3000, "denoise": 1.0}}),
        );
        let found = inspect(&workflow).unwrap();
        assert_eq!(found.steps, 3000);
        // 1 Mpx × 3000 steps = 3000 GPU-seconds → 1 + 300.
        assert_eq!(found.estimated_cost, Some(301));
    }

    #[test]
    fn sampler_custom_advanced_follows_sigma_splits_back_to_the_scheduler() {
        let mut workflow = custom(
            json!({"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["9", 0], "guider": ["10", 0], "sampler": ["6", 0], "sigmas": ["8", 1], "latent_image": ["5", 0]}}),
            json!({"class_type": "KarrasScheduler", "inputs": {"steps": 40, "sigma_max": 14.6, "sigma_min": 0.03, "rho": 7.0}}),
        );
        workflow["8"] =
            json!({"class_type": "SplitSigmas", "inputs": {"sigmas": ["7", 0], "step": 10}});
        workflow["9"] = json!({"class_type": "RandomNoise", "inputs": {"noise_seed": 1}});
        workflow["10"] = json!({"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["9", 0]}});
        assert_eq!(inspect(&workflow).unwrap().estimated_cost, Some(1 + 4));
    }

    #[test]
    fn steps_may_come_from_a_primitive_int() {
        let mut workflow = sdxl(1024, 1, 1);
        workflow["3"]["inputs"]["steps"] = json!(["9", 0]);
        workflow["9"] = json!({"class_type": "PrimitiveInt", "inputs": {"value": 200}});
        assert_eq!(inspect(&workflow).unwrap().estimated_cost, Some(1 + 20));
    }

    #[test]
    fn what_cannot_be_read_leaves_the_workflow_unpriced() {
        let unknown_node = {
            let mut workflow = sdxl(1024, 1, 20);
            workflow["9"] =
                json!({"class_type": "KSampler (Efficient)", "inputs": {"steps": 5000}});
            workflow
        };
        let steps_from_elsewhere = {
            let mut workflow = sdxl(1024, 1, 20);
            workflow["3"]["inputs"]["steps"] = json!(["4", 0]);
            workflow
        };
        let size_from_elsewhere = {
            let mut workflow = sdxl(1024, 1, 20);
            workflow["5"]["inputs"]["width"] = json!(["4", 0]);
            workflow
        };
        let sigmas_from_elsewhere = custom(
            json!({"class_type": "SamplerCustom", "inputs": {"sigmas": ["7", 0], "latent_image": ["5", 0]}}),
            json!({"class_type": "ManualSigmas", "inputs": {"sigmas": "14, 7, 1, 0"}}),
        );
        for workflow in [
            unknown_node,
            steps_from_elsewhere,
            size_from_elsewhere,
            sigmas_from_elsewhere,
        ] {
            let found = inspect(&workflow).unwrap();
            assert_eq!(found.estimated_cost, None, "{workflow}");
            assert!(found.unpriced.is_some());
        }
    }

    #[test]
    fn an_unpriced_workflow_holds_its_whole_time_limit() {
        let mut workflow = sdxl(1024, 1, 20);
        workflow["9"] = json!({"class_type": "SomeCustomNode", "inputs": {}});
        let found = inspect(&workflow).unwrap();
        assert_eq!(
            price(&found, 600),
            Price {
                hold: actual_cost(600),
                time_limit_seconds: 600
            }
        );
    }

    #[test]
    fn a_priced_job_runs_only_as_long_as_its_hold_pays() {
        let found = inspect(&sdxl(1024, 1, 20)).unwrap();
        // A hold of 3 may settle at 4 (10 % over, rounded up): 1 + 3 × 10 s.
        assert_eq!(
            price(&found, 600),
            Price {
                hold: 3,
                time_limit_seconds: 30
            }
        );
        assert_eq!(actual_cost(30), 4);
        assert_eq!(
            price(&found, 10),
            Price {
                hold: 3,
                time_limit_seconds: 10
            }
        );
    }

    #[test]
    fn upscales_batches_and_frames_grow_the_estimate() {
        let mut upscaled = sdxl(1024, 1, 20);
        upscaled["8"] = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 2.0}});
        // 4 Mpx × 20 steps = 80 GPU-seconds.
        assert_eq!(inspect(&upscaled).unwrap().estimated_cost, Some(1 + 8));
        let mut repeated = sdxl(1024, 1, 20);
        repeated["8"] = json!({"class_type": "RepeatLatentBatch", "inputs": {"samples": ["5", 0], "amount": 4}});
        assert_eq!(inspect(&repeated).unwrap().estimated_cost, Some(1 + 8));
        let video = json!({
            "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 1024, "height": 1024, "length": 49, "batch_size": 1}},
            "3": {"class_type": "KSampler", "inputs": {"latent_image": ["5", 0], "steps": 30}},
        });
        // 49 frames × 30 steps.
        assert_eq!(inspect(&video).unwrap().estimated_cost, Some(1 + 147));
    }

    #[test]
    fn actual_cost_matches_the_estimate_for_the_estimated_time() {
        assert_eq!(actual_cost(0), 1);
        assert_eq!(actual_cost(20), 3);
        assert_eq!(actual_cost(21), 4);
    }
}
