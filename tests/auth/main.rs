//! The gate: registration, login, tokens, recovery, forward-auth, rate limits.

mod register;
