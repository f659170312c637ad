//! Billing with Stripe: verified webhook events that buy credits, grant a plan's monthly
//! credits, change plans, start a grace period on failed payment, and claw back refunded
//! purchases. Each event is recorded by id in the same batch as its effect, and every
//! effect is idempotent on its own, so duplicates change nothing and late events do not
//! undo newer ones.

pub mod checkout;
pub mod signature;
pub mod stripe_api;
pub mod stripe_events;
