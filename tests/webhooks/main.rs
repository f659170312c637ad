//! Outgoing webhooks: endpoint CRUD, Standard Webhooks signatures, delivery from the
//! outbox by cron with retries, the delivery log, rotation and the SSRF guard, against a
//! receiver the tests run on loopback.

mod delivery;
mod endpoints;
mod events;
mod log;
mod rotation;
mod ssrf;
mod support;
