//! The gate: registration, login, tokens, recovery, forward-auth, rate limits.

mod browser;
mod change_password;
mod errors;
mod forward_auth;
mod login;
mod logout;
mod me;
mod password_reset;
mod rate_limits;
mod refresh;
mod register;
mod sso;
mod support;
mod verify_email;
mod verify_limits;
