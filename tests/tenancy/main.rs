//! Tenants, users, invitations, plans, API keys, and isolation between tenants.

mod tenant;
