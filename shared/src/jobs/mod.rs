//! GPU jobs: ComfyUI workflows queued by tenants and run by runners on worker pools.
//!
//! - [`workflow`]: the shape check and what a workflow asks for (sizes, models, VRAM, cost).
//! - [`workers`]: execution pools (a default per tenant, dedicated ones, shared platform
//!   pools) and their runners' health.
//! - [`bots`]: saved workflow templates assigned to a worker.
//! - [`runners`]: runner tokens and the runners' register/heartbeat.
//! - [`queue`]: enqueue, claim, lease renewal, finish, fail, cancel and the reaper — each
//!   one statement or one atomic batch.
//! - [`outputs`]: download links for outputs in S3-compatible storage, over [`s3`]
//!   (object URLs and AWS Signature V4, shared with the gpu-runner's uploads).
//! - [`http`]: the routes.

pub mod bots;
pub mod http;
pub mod outputs;
pub mod queue;
pub mod runners;
pub mod s3;
pub mod workers;
pub mod workflow;
