pub mod comfyui_double;
pub mod moto;
#[macro_use]
pub mod tollgate;
