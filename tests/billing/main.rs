//! Stripe webhooks: signatures, idempotent and order-independent effects on credits and
//! plans, grace and downgrade, refunds.

mod api;
mod async_payments;
mod events;
mod signatures;
mod stripe_double;
mod support;
