//! Tenants, users, invitations, plans, API keys, the platform-admin API, and isolation
//! between tenants.

mod api_keys;
mod branding;
mod helpers;
mod invitations;
mod isolation;
mod plans;
mod platform_admin;
mod tenant;
mod users;
