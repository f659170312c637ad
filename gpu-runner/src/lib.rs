//! The GPU runner: drives local ComfyUI instances (one per GPU) for Tollgate jobs.
//!
//! [`comfyui`] is the HTTP + WebSocket client for one ComfyUI server, [`execute`] runs one
//! job on it (submit, follow, enforce the time limit and cancellation, fetch outputs), and
//! [`store`] keeps the outputs. The queue transport (libSQL or Tollgate's runner endpoints)
//! plugs in above [`execute::execute`].

pub mod comfyui;
pub mod config;
pub mod execute;
pub mod store;
