//! Cron's reports and mail: usage reports built once per tenant and period with their
//! outbox events, read through `GET reports`; the email outbox delivered to a
//! SendGrid-compatible provider the tests run on loopback.

mod api;
mod building;
mod concurrency;
mod mail;
mod provider;
mod support;
