//! The scheduled work every runtime triggers (the native server's loop, a Workers cron
//! trigger, an external scheduler calling Spin). Each task is idempotent and safe to run
//! twice at once.

use http::StatusCode;
use subtle::ConstantTimeEq;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    audit,
    auth::sso,
    billing::{checkout, stripe_events},
    db::DbError,
    error::ApiResult,
    jobs::queue::{self, ReapReport},
    llm,
    mail::{self, MailReport},
    quota::counters,
    rate_limit,
    reports::{self, ReportsBuilt},
    sql,
    webhooks::{self, DeliveryReport},
};

/// What one run did, for the runtime's log.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct CronReport {
    pub rate_limit_windows_purged: u64,
    /// Refresh and one-time tokens, SSO sign-ins and kept provider documents past use.
    pub expired_tokens_purged: u64,
    pub usage_rows_purged: u64,
    pub tenants_downgraded: u64,
    /// Auto top-up requests charged off-session through Stripe.
    pub topups_charged: u64,
    /// Audit entries sealed (left unsealed by their requests) and pruned past retention.
    pub audit_entries_sealed: u64,
    pub audit_entries_pruned: u64,
    /// Outbox events fanned out to webhook endpoints, and the attempts made.
    pub webhooks: DeliveryReport,
    /// Usage reports built for the day and month that just ended.
    pub reports: ReportsBuilt,
    /// Mails sent from the outbox (none without a provider configured), and purged.
    pub emails: MailReport,
    /// Jobs whose lease expired: re-queued or failed, and holds released.
    pub jobs_reaped: ReapReport,
    /// Holds of LLM calls that never finished, released.
    pub llm_holds_released: u64,
    /// The kept text of LLM calls past their tenant's retention, dropped.
    pub llm_contents_purged: u64,
}

pub async fn run(env: &Env) -> Result<CronReport, DbError> {
    let now = env.now();
    let [old_days, old_events] = counters::purge_expired(now);
    let [downgrade_events, downgrade] = stripe_events::downgrade_lapsed(now);
    let results = env
        .db
        .batch(vec![
            rate_limit::purge_expired(now),
            // Refresh tokens are kept a day past expiry so that late reuse is still
            // recognised as reuse rather than as an unknown token.
            sql!(
                "DELETE FROM refresh_tokens WHERE expires_at < ?",
                now - 24 * 3600
            ),
            sql!(
                "DELETE FROM one_time_tokens WHERE expires_at < ?",
                now - 24 * 3600
            ),
            old_days,
            old_events,
            downgrade_events,
            downgrade,
            llm::policy::purge_expired_content(now),
            sso::flow::purge_expired(now),
            sso::oidc::purge_stale(now),
        ])
        .await?;
    // Sealing first: retention prunes sealed entries only.
    let audit_entries_sealed = audit::seal::seal_all(env).await?;
    let audit_entries_pruned = audit::retention::prune(env).await?;
    let topups_charged = checkout::charge_topups(env).await?;
    // Before the deliveries, so the events of jobs failed here go out in this run.
    let jobs_reaped = queue::reap(env).await?;
    let llm_holds_released = llm::calls::release_stale_holds(env).await?;
    // Before webhook delivery, so the report events go out in this run.
    let reports = reports::build::run(env).await?;
    // After the housekeeping batch and the top-ups, so the events they wrote go out in
    // this run.
    let webhooks = webhooks::delivery::run(env).await?;
    // Last: the reports and webhook deliveries above may have queued mail.
    let emails = mail::delivery::run(env).await?;
    Ok(CronReport {
        rate_limit_windows_purged: results[0].rows_affected,
        expired_tokens_purged: results[1].rows_affected
            + results[2].rows_affected
            + results[8].rows_affected
            + results[9].rows_affected,
        usage_rows_purged: results[3].rows_affected + results[4].rows_affected,
        tenants_downgraded: results[6].rows_affected,
        topups_charged,
        audit_entries_sealed,
        audit_entries_pruned,
        webhooks,
        reports,
        emails,
        jobs_reaped,
        llm_holds_released,
        llm_contents_purged: results[7].rows_affected,
    })
}

/// `POST /api/v1/cron/run` with `Authorization: Bearer <TOLLGATE_CRON_SECRET>`: one run, its
/// report as JSON. For runtimes with no scheduler of their own; absent (404) unless a secret
/// is configured, so no deployment exposes it by accident.
pub async fn run_on_request(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let Some(secret) = env.config.cron_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no route for this path",
        ));
    };
    let presented = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(ApiError::unauthorized(
            "the cron secret is missing or wrong",
        ));
    }
    let report = run(env).await?;
    Ok(ok(&report))
}
