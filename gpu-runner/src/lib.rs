//! The GPU runner: drives local ComfyUI instances (one per GPU) for Tollgate jobs.
//!
//! [`comfyui`] is the HTTP + WebSocket client for one ComfyUI server, [`execute`] runs one
//! job on it (submit, follow, enforce the time limit and cancellation, fetch outputs), and
//! [`store`] keeps the outputs. [`queue`] is the job queue as a runner sees it (one trait;
//! today Tollgate's runner endpoints over HTTP), and [`worker`] is the loop that claims,
//! runs and settles jobs.

pub mod comfyui;
pub mod config;
pub mod execute;
pub mod queue;
pub mod store;
pub mod worker;
