//! Credits: balances, grants and allowances, two-phase reservations, the ledger, alerts
//! and blocking, auto top-up, and the money invariants under concurrency.

mod alerts;
mod bounds;
mod balances;
mod concurrency;
mod ledger;
mod reservations;
mod support;
