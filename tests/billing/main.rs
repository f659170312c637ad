//! Stripe webhooks: signatures, idempotent and order-independent effects on credits and
//! plans, grace and downgrade, refunds.

mod events;
mod signatures;
mod support;
