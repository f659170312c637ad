//! The tenant's side of billing: a Checkout Session for a plan or a credit pack, the
//! customer portal, the invoice list, and charging auto top-ups off-session.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok},
    auth::{principal::Principal, rbac::Permission},
    billing::stripe_api::call,
    credits::{
        alerts,
        ledger::{Movement, apply},
    },
    db::DbError,
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::plans,
};

/// The largest amount Stripe charges in one payment, in the currency's smallest unit
/// (999,999.99 of a two-decimal currency).
const MAX_CHARGE_MINOR_UNITS: i64 = 99_999_999;

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
enum Kind {
    Subscription,
    Credits,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckoutBody {
    kind: Kind,
    /// With `subscription`: the plan to buy.
    plan: Option<String>,
    /// With `credits`: how many.
    credits: Option<i64>,
    success_url: Option<String>,
    cancel_url: Option<String>,
}

struct Billing {
    customer: Option<String>,
    owner_email: String,
}

async fn billing_of(env: &Env, principal: &Principal) -> ApiResult<Billing> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT t.stripe_customer_id, (SELECT email FROM users u WHERE u.tenant_id = t.id AND u.role = 'owner'
                    AND u.status = 'active' ORDER BY u.created_at LIMIT 1) AS owner_email
             FROM tenants t WHERE t.id = ?",
            &principal.tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Billing {
        customer: row.get("stripe_customer_id")?,
        owner_email: row
            .get::<Option<String>>("owner_email")?
            .unwrap_or_default(),
    })
}

fn return_url(env: &Env, given: Option<String>, field: &str, fallback: &str) -> ApiResult<String> {
    match given {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(url),
        Some(_) => Err(ApiError::invalid_field(field, "must be an http(s) URL")),
        None => Ok(format!("{}{fallback}", env.config.public_url)),
    }
}

/// `POST /api/v1/billing/checkout`: `{"kind":"subscription","plan":"PRO"}` or
/// `{"kind":"credits","credits":1000}`; answers the session's id and URL. The tenant id
/// travels in the session's (and the subscription's) metadata, which is how the webhook
/// finds the tenant whatever order events arrive in.
pub async fn checkout(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::BillingManage)?;
    let body: CheckoutBody = request.json()?;
    let success = return_url(env, body.success_url, "success_url", "/billing/success")?;
    let cancel = return_url(env, body.cancel_url, "cancel_url", "/billing/cancel")?;
    let billing = billing_of(env, principal).await?;
    let tenant = principal.tenant_id.as_str().to_owned();
    let mut form: Vec<(&str, String)> = vec![
        ("success_url", success),
        ("cancel_url", cancel),
        ("client_reference_id", tenant.clone()),
        ("metadata[tenant_id]", tenant.clone()),
        ("line_items[0][quantity]", "1".into()),
    ];
    match &billing.customer {
        Some(customer) => form.push(("customer", customer.clone())),
        None if !billing.owner_email.is_empty() => {
            form.push(("customer_email", billing.owner_email.clone()))
        }
        None => {}
    }
    match body.kind {
        Kind::Subscription => {
            let plan = body
                .plan
                .ok_or_else(|| ApiError::invalid_field("plan", "a subscription names its plan"))?;
            let code = plans::parse_code("plan", &plan)?;
            let price = plans::stripe_price(env, code).await?.ok_or_else(|| {
                ApiError::invalid_field("plan", format!("{code} cannot be bought"))
            })?;
            form.extend([
                ("mode", "subscription".to_owned()),
                ("line_items[0][price]", price),
                ("metadata[plan]", code.to_owned()),
                ("subscription_data[metadata][tenant_id]", tenant.clone()),
                ("subscription_data[metadata][plan]", code.to_owned()),
            ]);
        }
        Kind::Credits => {
            let credits = body.credits.unwrap_or(0);
            if !(1..=100_000_000).contains(&credits) {
                return Err(ApiError::invalid_field(
                    "credits",
                    "must be from 1 to 100,000,000",
                ));
            }
            let price = credits
                .checked_mul(env.config.credit_price_cents)
                .filter(|cents| *cents <= MAX_CHARGE_MINOR_UNITS)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "credits",
                        format!(
                            "would cost more than one payment carries ({MAX_CHARGE_MINOR_UNITS} in the currency's smallest unit)"
                        ),
                    )
                })?;
            form.extend([
                ("mode", "payment".to_owned()),
                (
                    "line_items[0][price_data][currency]",
                    env.config.billing_currency.clone(),
                ),
                ("line_items[0][price_data][unit_amount]", price.to_string()),
                (
                    "line_items[0][price_data][product_data][name]",
                    format!("{credits} Tollgate credits"),
                ),
                ("metadata[credits]", credits.to_string()),
            ]);
        }
    }
    let session = call(
        env,
        Method::POST,
        "/v1/checkout/sessions",
        &form,
        Some(&new_id()),
    )
    .await?;
    Ok(created(
        &json!({ "id": session["id"], "url": session["url"] }),
    ))
}

fn no_customer() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_billing_account",
        "this tenant has not paid through Stripe yet",
    )
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct PortalBody {
    return_url: Option<String>,
}

/// `POST /api/v1/billing/portal`: a Stripe customer-portal session for the tenant.
pub async fn portal(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::BillingManage)?;
    let body: PortalBody = if request.body.is_empty() {
        PortalBody::default()
    } else {
        request.json()?
    };
    let back = return_url(env, body.return_url, "return_url", "/billing")?;
    let customer = billing_of(env, principal)
        .await?
        .customer
        .ok_or_else(no_customer)?;
    let session = call(
        env,
        Method::POST,
        "/v1/billing_portal/sessions",
        &[("customer", customer), ("return_url", back)],
        Some(&new_id()),
    )
    .await?;
    Ok(created(&json!({ "url": session["url"] })))
}

/// `GET /api/v1/billing/invoices`: the tenant's invoices, newest first, as Stripe lists them.
pub async fn invoices(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::BillingManage)?;
    let limit = request.page()?.limit.min(100);
    let customer = billing_of(env, principal)
        .await?
        .customer
        .ok_or_else(no_customer)?;
    let list = call(
        env,
        Method::GET,
        "/v1/invoices",
        &[("customer", customer), ("limit", limit.to_string())],
        None,
    )
    .await?;
    let invoices: Vec<Json> = list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|invoice| {
            json!({
                "id": invoice["id"],
                "status": invoice["status"],
                "currency": invoice["currency"],
                "amount_due": invoice["amount_due"],
                "amount_paid": invoice["amount_paid"],
                "hosted_invoice_url": invoice["hosted_invoice_url"],
                "invoice_pdf": invoice["invoice_pdf"],
                "created": invoice["created"],
            })
        })
        .collect();
    Ok(ok(
        &json!({ "data": invoices, "has_more": list["has_more"] }),
    ))
}

/// Cron: charges pending auto top-up requests off-session. A request is claimed with one
/// conditional UPDATE first, so two cron runs never charge it twice; a successful charge
/// becomes a `purchase` movement keyed by the request.
pub async fn charge_topups(env: &Env) -> Result<u64, DbError> {
    if env.config.stripe_secret_key.is_none() {
        return Ok(0);
    }
    let now = env.now();
    let claim = new_id();
    let claimed = env
        .db
        .execute(sql!(
            "UPDATE credit_topup_requests SET status = 'charging', batch_id = ?
             WHERE status = 'pending' AND tenant_id IN (SELECT id FROM tenants WHERE stripe_customer_id IS NOT NULL)
             RETURNING id, tenant_id, account_id, amount,
                       (SELECT stripe_customer_id FROM tenants t WHERE t.id = credit_topup_requests.tenant_id) AS customer",
            &claim
        ))
        .await?;
    let mut charged = 0;
    for row in claimed.iter() {
        let (id, tenant_id, account_id, amount, customer): (String, String, String, i64, String) = (
            row.get("id")?,
            row.get("tenant_id")?,
            row.get("account_id")?,
            row.get("amount")?,
            row.get("customer")?,
        );
        let intent = call(
            env,
            Method::POST,
            "/v1/payment_intents",
            &[
                (
                    "amount",
                    // Saturating: a price past what Stripe takes is refused by Stripe, and
                    // the request ends failed, never with a wrapped amount.
                    amount
                        .saturating_mul(env.config.credit_price_cents)
                        .to_string(),
                ),
                ("currency", env.config.billing_currency.clone()),
                ("customer", customer),
                ("off_session", "true".into()),
                ("confirm", "true".into()),
                ("metadata[tenant_id]", tenant_id.clone()),
                ("metadata[topup_request]", id.clone()),
            ],
            Some(&format!("topup:{id}")),
        )
        .await;
        let succeeded = intent
            .as_ref()
            .is_ok_and(|intent| intent["status"] == "succeeded");
        let mut statements = vec![sql!(
            "UPDATE credit_topup_requests SET status = ? WHERE id = ? AND status = 'charging'",
            if succeeded { "charged" } else { "failed" },
            &id
        )];
        if succeeded {
            let movement = Movement {
                id: new_id(),
                tenant_id: &tenant_id,
                account_id: account_id.clone(),
                kind: "purchase",
                total_delta: amount,
                used_delta: 0,
                reserved_delta: 0,
                reason: Some("auto top-up".into()),
                actor_id: Some("stripe".into()),
                idempotency_key: format!("topup:{id}"),
                now,
            };
            statements.extend([movement.record(), apply(&[&movement.id], now)]);
            statements.extend(alerts::resolve(std::slice::from_ref(&account_id), now));
            statements.push(sql!(
                "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at) VALUES (?, ?, 'credits.purchased', ?, ?)",
                new_id(),
                &tenant_id,
                json!({ "credits": amount, "topup_request": id, "account_id": account_id }).to_string(),
                now
            ));
            charged += 1;
        }
        env.db.batch(statements).await?;
    }
    Ok(charged)
}
