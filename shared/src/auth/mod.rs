//! Who is calling and what may they do: passwords, access and refresh tokens, API keys,
//! roles and scopes, forward-auth for a reverse proxy and browser sessions behind it,
//! password recovery, single sign-on.

pub mod api_keys;
pub mod browser;
pub mod forwarded;
pub mod identity;
pub mod jwt;
pub mod password;
pub mod principal;
pub mod rbac;
pub mod recovery;
pub mod sessions;
pub mod sso;
