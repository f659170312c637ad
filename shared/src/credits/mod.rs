//! Credits: a pool per tenant and an account per user, moved only through ledger rows.
//!
//! Every movement is a [`ledger`] row applied to its account in the same batch. The account
//! row carries the money invariant as a CHECK (`used + reserved <= total`), so a statement
//! that would overspend fails and takes its whole batch with it: concurrent reserves can
//! never oversell a balance, on any runtime. A user's spend draws on the user's allowance
//! (when one is set) and on the tenant pool in every case; either running out stops it.
//!
//! Spending is two-phase ([`reservations`]): reserve an estimate before the work, then
//! settle the actual cost (at most [`reservations::SETTLE_OVERAGE_PERCENT`] over the
//! estimate) or release it. Crossing a threshold records an [`alerts`] row once per month,
//! writes an outbox event, and at 100 % blocks reserves until credits are added.

pub mod accounts;
pub mod alerts;
pub mod grants;
pub mod ledger;
pub mod reservations;

/// The most credits one amount of the API may name: a hold, a charge, a grant or
/// adjustment, an allowance, a top-up. The schema stops balances at 10^15 (a trigger
/// answers `out_of_range`), so a balance plus any one amount always fits in 64 bits.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// `value` of `field` when it lies in `min..=MAX_AMOUNT` (or `-MAX_AMOUNT..=MAX_AMOUNT`
/// with a negative `min`), else the 422 that names the bounds.
pub(crate) fn bounded_amount(field: &str, value: i64, min: i64) -> crate::error::ApiResult<i64> {
    let low = min.max(-MAX_AMOUNT);
    if (low..=MAX_AMOUNT).contains(&value) {
        Ok(value)
    } else {
        Err(crate::ApiError::invalid_field(
            field,
            format!("must be a whole number of credits from {low} to {MAX_AMOUNT}"),
        ))
    }
}

/// Runs a batch of movements. `None` when it would spend or hold more than an account
/// holds: the account CHECK refused it, and the batch changed nothing. A total taken below
/// zero breaks `credits_not_negative` too, and SQLite names that one first.
pub(crate) async fn within_balance(
    env: &crate::Env,
    statements: Vec<crate::db::Statement>,
) -> crate::error::ApiResult<Option<Vec<crate::db::Rows>>> {
    match env.db.batch(statements).await {
        Err(crate::db::DbError::Constraint(message))
            if message.contains("credits_cover_spend")
                || message.contains("credits_not_negative") =>
        {
            Ok(None)
        }
        other => Ok(Some(other?)),
    }
}
