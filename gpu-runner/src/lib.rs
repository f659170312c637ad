//! The GPU runner: drives local ComfyUI instances (one per GPU) for Tollgate jobs.
//!
//! [`comfyui`] is the HTTP + WebSocket client for one ComfyUI server, [`execute`] runs one
//! job on it (submit, follow, enforce the time limit and cancellation, fetch outputs), and
//! [`store`] keeps the outputs. [`queue`] is the job queue as a runner sees it: one trait,
//! two transports — Tollgate's runner endpoints over HTTP ([`queue::HttpQueue`]) or the
//! database itself ([`direct::DbQueue`], the same shared queue functions) — and [`worker`]
//! is the loop that claims, runs and settles jobs. [`redact`] keeps the GPU host's
//! tracebacks and paths out of what tenants read; [`log`] writes the runner's log lines.

pub mod comfyui;
pub mod config;
pub mod direct;
pub mod execute;
pub mod log;
pub mod queue;
pub mod redact;
pub mod store;
pub mod worker;
