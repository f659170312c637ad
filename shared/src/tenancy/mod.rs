//! Tenants, their plans, users and invitations, and how a request names its tenant.

pub mod admin;
pub mod branding;
pub mod invitations;
pub mod plans;
pub mod tenants;
pub mod users;
mod values;

pub use values::{Email, Slug, parse_display_name, parse_domain_name};
