pub mod comfyui_double;
