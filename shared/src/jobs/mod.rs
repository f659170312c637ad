//! GPU jobs: ComfyUI workflows queued by tenants and run by runners on worker pools.
//!
//! - [`workflow`]: the shape check and what a workflow asks for (sizes, models, VRAM, cost).
//! - [`workers`]: execution pools (a default per tenant, dedicated ones, shared platform
//!   pools) and their runners' health.
//! - [`bots`]: saved workflow templates assigned to a worker.
//! - [`runners`]: runner tokens and the runners' register/heartbeat.
//! - [`queue`]: enqueue, claim, lease renewal, finish, fail, cancel and the reaper — each
//!   one statement or one atomic batch.
//! - [`http`]: the routes.

pub mod bots;
pub mod http;
pub mod queue;
pub mod runners;
pub mod workers;
pub mod workflow;
