//! Credits: balances, grants and allowances, two-phase reservations, the ledger, alerts
//! and blocking, auto top-up, and the money invariants under concurrency.

mod alerts;
mod balances;
mod bounds;
mod concurrency;
mod crowded_database;
mod ledger;
mod reservations;
mod support;
