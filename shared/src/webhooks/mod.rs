//! Outgoing webhooks: tenants register endpoints, and every event their changes write to
//! the outbox is delivered to the endpoints that subscribe to it, signed the Standard
//! Webhooks way, retried with backoff, and logged.
//!
//! - `endpoints`: CRUD and secret rotation (the HTTP routes);
//! - `urls`: which URLs may be registered (the early half of the SSRF guard; the outbound
//!   adapter checks resolved addresses on every send);
//! - `events`: the event types, how a change records one, the delivered envelope;
//! - `signing`: `webhook-signature`;
//! - `delivery`: fan-out from the outbox, claims with leases, sending and recording (cron);
//! - `schedule`: what an answer means: success, retry when, or give up;
//! - `log`: the delivery log, manual redelivery and test messages.
//!
//! Every statement that touches the webhook tables is in this module.

pub mod delivery;
pub mod endpoints;
pub mod events;
pub mod log;
pub mod schedule;
pub mod signing;
pub mod urls;

pub use delivery::DeliveryReport;
