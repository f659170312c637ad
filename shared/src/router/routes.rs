//! Wires paths to handlers; the rules live in the capability modules.

use http::{Method, StatusCode};
use serde_json::json;

use super::openapi;
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    audit,
    auth::{api_keys, identity, principal, recovery, sessions, sso},
    billing, console,
    credits::{accounts, alerts, grants, ledger, reservations},
    cron,
    error::ApiResult,
    jobs, llm, mail, quota, reports, sql,
    tenancy::{admin, invitations, plans, tenants, users},
    webhooks,
};

/// Dispatches on the method; any other method answers 405 with `Allow`.
macro_rules! on {
    ($method:expr, { $($verb:ident => $arm:expr),+ $(,)? }) => {
        match *$method {
            $(Method::$verb => $arm,)+
            _ => Err(method_not_allowed(&[$(stringify!($verb)),+])),
        }
    };
}

/// Authenticates the caller, runs the handler with it, and adds the caller's
/// `RateLimit-*` headers to the answer.
macro_rules! signed_in {
    ($env:expr, $request:expr, |$principal:ident| $call:expr) => {{
        let principal = principal::authenticate($env, $request).await?;
        let $principal = &principal;
        let mut response = $call.await?;
        principal.rate.apply(&mut response);
        Ok(response)
    }};
}

pub(super) async fn route(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    // OpenAI's API, for the official SDKs (`base_url=<host>/v1`): its own routes and errors.
    if let Some(path) = request.path.strip_prefix("/v1/") {
        return Ok(llm::route(env, request, path).await);
    }
    if let Some(path) = request.path.strip_prefix("/console")
        && (path.is_empty() || path.starts_with('/'))
    {
        return Ok(console::route(env, request, path).await);
    }
    let Some(path) = request.path.strip_prefix("/api/v1/") else {
        return Err(no_route(request));
    };
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let method = &request.method;
    match segments.as_slice() {
        ["health"] => on!(method, { GET => health(env).await }),
        ["openapi.json"] => on!(method, { GET => Ok(openapi::document_response()) }),
        ["docs"] => on!(method, { GET => Ok(openapi::reference_response()) }),
        ["cron", "run"] => on!(method, { POST => cron::run_on_request(env, request).await }),

        ["auth", "register"] => on!(method, { POST => tenants::register(env, request).await }),
        ["auth", "sso", "callback"] => {
            on!(method, { GET => sso::flow::callback(env, request).await })
        }
        ["auth", "sso", tenant, "start"] => on!(method, {
            GET => sso::flow::start(env, request, tenant).await,
        }),
        ["sso", "providers"] => on!(method, {
            GET => signed_in!(env, request, |p| sso::providers::list(env, p)),
            POST => signed_in!(env, request, |p| sso::providers::create(env, request, p)),
        }),
        ["sso", "providers", id] => on!(method, {
            DELETE => signed_in!(env, request, |p| sso::providers::delete(env, p, id)),
        }),
        ["sso", "settings"] => on!(method, {
            GET => signed_in!(env, request, |p| sso::providers::settings(env, p)),
            PUT => signed_in!(env, request, |p| sso::providers::set_settings(env, request, p)),
        }),
        ["sso", "domains"] => on!(method, {
            GET => signed_in!(env, request, |p| sso::domains::list(env, p)),
            POST => signed_in!(env, request, |p| sso::domains::add(env, request, p)),
        }),
        ["sso", "domains", domain] => on!(method, {
            DELETE => signed_in!(env, request, |p| sso::domains::delete(env, p, domain)),
        }),
        ["sso", "domains", domain, "verify"] => on!(method, {
            POST => signed_in!(env, request, |p| sso::domains::verify(env, p, domain)),
        }),
        ["auth", "login"] => on!(method, { POST => sessions::login(env, request).await }),
        ["auth", "refresh"] => on!(method, { POST => sessions::refresh(env, request).await }),
        ["auth", "logout"] => on!(method, { POST => sessions::logout(env, request).await }),
        ["auth", "forgot-password"] => {
            on!(method, { POST => recovery::forgot_password(env, request).await })
        }
        ["auth", "reset-password"] => {
            on!(method, { POST => recovery::reset_password(env, request).await })
        }
        ["auth", "change-password"] => on!(method, {
            POST => signed_in!(env, request, |p| recovery::change_password(env, request, p)),
        }),
        ["auth", "verify-email"] => {
            on!(method, { POST => recovery::verify_email(env, request).await })
        }
        // Proxies send their subrequest with the method of the request they guard.
        ["auth", "verify"] => identity::verify(env, request).await,
        ["auth", "me"] => {
            on!(method, { GET => signed_in!(env, request, |p| identity::me(env, p)) })
        }

        ["webhooks", "stripe"] => {
            on!(method, { POST => billing::stripe_events::receive(env, request).await })
        }

        ["webhooks", "event-types"] => on!(method, {
            GET => signed_in!(env, request, |p| webhooks::endpoints::event_types(p)),
        }),
        ["webhooks", "endpoints"] => on!(method, {
            GET => signed_in!(env, request, |p| webhooks::endpoints::list(env, request, p)),
            POST => signed_in!(env, request, |p| webhooks::endpoints::create(env, request, p)),
        }),
        ["webhooks", "endpoints", id] => on!(method, {
            GET => signed_in!(env, request, |p| webhooks::endpoints::get(env, p, id)),
            PATCH => signed_in!(env, request, |p| webhooks::endpoints::update(env, request, p, id)),
            DELETE => signed_in!(env, request, |p| webhooks::endpoints::delete(env, p, id)),
        }),
        ["webhooks", "endpoints", id, "rotate-secret"] => on!(method, {
            POST => signed_in!(env, request, |p| webhooks::endpoints::rotate_secret(env, p, id)),
        }),
        ["webhooks", "endpoints", id, "test"] => on!(method, {
            POST => signed_in!(env, request, |p| webhooks::log::send_test(env, p, id)),
        }),
        ["webhooks", "endpoints", id, "deliveries"] => on!(method, {
            GET => signed_in!(env, request, |p| webhooks::log::list(env, request, p, id)),
        }),
        ["webhooks", "deliveries", id] => on!(method, {
            GET => signed_in!(env, request, |p| webhooks::log::get(env, p, id)),
        }),
        ["webhooks", "deliveries", id, "redeliver"] => on!(method, {
            POST => signed_in!(env, request, |p| webhooks::log::redeliver(env, p, id)),
        }),

        ["billing", "checkout"] => on!(method, {
            POST => signed_in!(env, request, |p| billing::checkout::checkout(env, request, p)),
        }),
        ["billing", "portal"] => on!(method, {
            POST => signed_in!(env, request, |p| billing::checkout::portal(env, request, p)),
        }),
        ["billing", "invoices"] => on!(method, {
            GET => signed_in!(env, request, |p| billing::checkout::invoices(env, request, p)),
        }),

        ["plans"] => on!(method, { GET => plans::list(env).await }),

        ["tenant"] => on!(method, {
            GET => signed_in!(env, request, |p| tenants::get(env, p)),
            PUT => signed_in!(env, request, |p| tenants::update(env, request, p)),
            DELETE => signed_in!(env, request, |p| tenants::delete(env, p)),
        }),

        ["users"] => on!(method, {
            GET => signed_in!(env, request, |p| users::list(env, request, p)),
            POST => signed_in!(env, request, |p| users::create(env, request, p)),
        }),
        ["users", id] => on!(method, {
            GET => signed_in!(env, request, |p| users::get(env, p, id)),
            PUT => signed_in!(env, request, |p| users::update(env, request, p, id)),
            DELETE => signed_in!(env, request, |p| users::delete(env, p, id)),
        }),
        ["users", id, "role"] => on!(method, {
            PUT => signed_in!(env, request, |p| users::change_role(env, request, p, id)),
        }),

        ["invitations"] => on!(method, {
            GET => signed_in!(env, request, |p| invitations::list(env, request, p)),
            POST => signed_in!(env, request, |p| invitations::create(env, request, p)),
        }),
        ["invitations", "accept"] => {
            on!(method, { POST => invitations::accept(env, request).await })
        }
        ["invitations", id] => on!(method, {
            DELETE => signed_in!(env, request, |p| invitations::revoke(env, p, id)),
        }),

        ["api-keys"] => on!(method, {
            GET => signed_in!(env, request, |p| api_keys::list(env, request, p)),
            POST => signed_in!(env, request, |p| api_keys::create(env, request, p)),
        }),
        ["api-keys", id] => on!(method, {
            GET => signed_in!(env, request, |p| api_keys::get(env, p, id)),
            PATCH => signed_in!(env, request, |p| api_keys::update(env, request, p, id)),
            DELETE => signed_in!(env, request, |p| api_keys::revoke(env, p, id)),
        }),

        ["credits"] => {
            on!(method, { GET => signed_in!(env, request, |p| accounts::get_own(env, p)) })
        }
        ["credits", "ledger"] => {
            on!(method, { GET => signed_in!(env, request, |p| ledger::list_own(env, request, p)) })
        }
        ["credits", "alerts"] => {
            on!(method, { GET => signed_in!(env, request, |p| alerts::list(env, p)) })
        }
        ["credits", "settings"] => on!(method, {
            PUT => signed_in!(env, request, |p| accounts::update_pool_settings(env, request, p)),
        }),
        ["credits", "reservations"] => on!(method, {
            POST => signed_in!(env, request, |p| reservations::create(env, request, p)),
        }),
        ["credits", "reservations", id] => on!(method, {
            GET => signed_in!(env, request, |p| reservations::get(env, p, id)),
        }),
        ["credits", "reservations", id, "settle"] => on!(method, {
            POST => signed_in!(env, request, |p| reservations::post_settle(env, request, p, id)),
        }),
        ["credits", "reservations", id, "refund"] => on!(method, {
            POST => signed_in!(env, request, |p| reservations::post_refund(env, p, id)),
        }),
        ["credits", "reservations", id, "release"] => on!(method, {
            POST => signed_in!(env, request, |p| reservations::post_release(env, p, id)),
        }),
        ["users", id, "credits"] => {
            on!(method, { GET => signed_in!(env, request, |p| accounts::get_user(env, p, id)) })
        }
        ["users", id, "credits", "ledger"] => on!(method, {
            GET => signed_in!(env, request, |p| ledger::list_user(env, request, p, id)),
        }),
        ["users", id, "credits", "allowance"] => on!(method, {
            PUT => signed_in!(env, request, |p| grants::set_allowance(env, request, p, id)),
        }),
        ["users", id, "credits", "grants"] => on!(method, {
            POST => signed_in!(env, request, |p| grants::grant_to_user(env, request, p, id)),
        }),
        ["users", id, "credits", "settings"] => on!(method, {
            PUT => signed_in!(env, request, |p| accounts::update_user_settings(env, request, p, id)),
        }),

        ["usage"] => on!(method, {
            GET => signed_in!(env, request, |p| quota::http::usage(env, request, p)),
        }),
        ["usage", "events"] => on!(method, {
            POST => signed_in!(env, request, |p| quota::http::record_event(env, request, p)),
        }),
        ["users", id, "usage"] => on!(method, {
            GET => signed_in!(env, request, |p| quota::http::user_usage(env, p, id)),
        }),
        ["users", id, "quota"] => on!(method, {
            PUT => signed_in!(env, request, |p| quota::http::set_user_limit(env, request, p, id)),
        }),
        ["plan-limits", "check"] => on!(method, {
            POST => signed_in!(env, request, |p| quota::http::check_plan_limits(env, request, p)),
        }),
        ["admin", "tenants", id, "quota"] => on!(method, {
            PUT => quota::http::set_tenant_limit(env, request, id).await,
        }),

        ["jobs"] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::http::list(env, request, p)),
            POST => signed_in!(env, request, |p| jobs::http::create(env, request, p)),
        }),
        ["jobs", id] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::http::get(env, p, id)),
        }),
        ["jobs", id, "cancel"] => on!(method, {
            POST => signed_in!(env, request, |p| jobs::http::cancel(env, p, id)),
        }),
        ["workers"] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::workers::list(env, p)),
            POST => signed_in!(env, request, |p| jobs::workers::create(env, request, p)),
        }),
        ["workers", id] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::workers::get(env, p, id)),
            PATCH => signed_in!(env, request, |p| jobs::workers::update(env, request, p, id)),
        }),
        ["workers", id, "runner-tokens"] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::runners::list_tokens(env, p, id)),
            POST => signed_in!(env, request, |p| jobs::runners::create_token(env, request, p, id)),
        }),
        ["workers", id, "runner-tokens", token] => on!(method, {
            DELETE => signed_in!(env, request, |p| jobs::runners::revoke_token(env, p, id, token)),
        }),
        ["bots"] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::bots::list(env, request, p)),
            POST => signed_in!(env, request, |p| jobs::bots::create(env, request, p)),
        }),
        ["bots", id] => on!(method, {
            GET => signed_in!(env, request, |p| jobs::bots::get(env, p, id)),
            PATCH => signed_in!(env, request, |p| jobs::bots::update(env, request, p, id)),
            DELETE => signed_in!(env, request, |p| jobs::bots::delete(env, p, id)),
        }),
        ["admin", "workers", id, "runner-tokens"] => on!(method, {
            POST => jobs::runners::admin_create_token(env, request, id).await,
        }),
        ["runner", "heartbeat"] => {
            on!(method, { POST => jobs::runners::heartbeat(env, request).await })
        }
        ["runner", "claim"] => {
            on!(method, { POST => jobs::http::runner_claim(env, request).await })
        }
        ["runner", "jobs", id, "renew"] => {
            on!(method, { POST => jobs::http::runner_renew(env, request, id).await })
        }
        ["runner", "jobs", id, "progress"] => {
            on!(method, { POST => jobs::http::runner_progress(env, request, id).await })
        }
        ["runner", "jobs", id, "finish"] => {
            on!(method, { POST => jobs::http::runner_finish(env, request, id).await })
        }
        ["runner", "jobs", id, "fail"] => {
            on!(method, { POST => jobs::http::runner_fail(env, request, id).await })
        }

        ["audit-logs"] => on!(method, {
            GET => signed_in!(env, request, |p| audit::http::list(env, request, p)),
        }),
        ["audit-logs", "verify"] => on!(method, {
            GET => signed_in!(env, request, |p| audit::http::verify(env, p)),
        }),
        ["admin", "tenants", id, "audit-logs"] => on!(method, {
            GET => audit::http::admin_list(env, request, id).await,
        }),
        ["admin", "tenants", id, "audit-logs", "verify"] => on!(method, {
            GET => audit::http::admin_verify(env, request, id).await,
        }),

        ["reports"] => on!(method, {
            GET => signed_in!(env, request, |p| reports::http::list(env, request, p)),
        }),
        ["reports", id] => on!(method, {
            GET => signed_in!(env, request, |p| reports::http::get(env, p, id)),
        }),
        ["admin", "emails"] => on!(method, { GET => mail::http::admin_list(env, request).await }),
        ["admin", "audit-logs"] => on!(method, {
            GET => audit::http::admin_platform_list(env, request).await,
        }),

        ["llm", "provider-keys"] => on!(method, {
            GET => signed_in!(env, request, |p| llm::keys::tenant_list(env, request, p)),
            POST => signed_in!(env, request, |p| llm::keys::tenant_create(env, request, p)),
        }),
        ["llm", "provider-keys", id] => on!(method, {
            DELETE => signed_in!(env, request, |p| llm::keys::tenant_delete(env, p, id)),
        }),
        ["llm", "models"] => on!(method, {
            GET => signed_in!(env, request, |p| llm::models::tenant_list(env, request, p)),
            POST => signed_in!(env, request, |p| llm::models::tenant_create(env, request, p)),
        }),
        ["llm", "models", id] => on!(method, {
            PUT => signed_in!(env, request, |p| llm::models::tenant_update(env, request, p, id)),
            DELETE => signed_in!(env, request, |p| llm::models::tenant_delete(env, p, id)),
        }),
        ["llm", "interactions"] => on!(method, {
            GET => signed_in!(env, request, |p| llm::interactions::list(env, request, p)),
        }),
        ["llm", "interactions", id] => on!(method, {
            GET => signed_in!(env, request, |p| llm::interactions::get(env, p, id)),
        }),
        ["llm", "settings"] => on!(method, {
            GET => signed_in!(env, request, |p| llm::policy::settings(env, p)),
            PUT => signed_in!(env, request, |p| llm::policy::set_settings(env, request, p)),
        }),
        ["llm", "users", id, "models"] => on!(method, {
            GET => signed_in!(env, request, |p| llm::policy::user_models(env, p, id)),
            PUT => signed_in!(env, request, |p| llm::policy::set_user_models(env, request, p, id)),
        }),
        ["admin", "llm", "provider-keys"] => on!(method, {
            GET => llm::keys::admin_list(env, request).await,
            POST => llm::keys::admin_create(env, request).await,
        }),
        ["admin", "llm", "provider-keys", id] => on!(method, {
            DELETE => llm::keys::admin_delete(env, request, id).await,
        }),
        ["admin", "llm", "models"] => on!(method, {
            GET => llm::models::admin_list(env, request).await,
            POST => llm::models::admin_create(env, request).await,
        }),
        ["admin", "llm", "models", id] => on!(method, {
            PUT => llm::models::admin_update(env, request, id).await,
            DELETE => llm::models::admin_delete(env, request, id).await,
        }),

        ["admin", "login"] => on!(method, { POST => admin::login(env, request).await }),
        ["admin", "tenants"] => on!(method, { GET => admin::list_tenants(env, request).await }),
        ["admin", "tenants", id, "suspend"] => on!(method, {
            POST => admin::change_status(env, request, id, "suspended").await,
        }),
        ["admin", "tenants", id, "reactivate"] => on!(method, {
            POST => admin::change_status(env, request, id, "active").await,
        }),
        ["admin", "tenants", id, "credits", "adjustments"] => on!(method, {
            POST => admin::adjust_credits(env, request, id).await,
        }),
        ["admin", "tenants", id, "credits", "grants"] => on!(method, {
            POST => admin::grant_credits(env, request, id).await,
        }),
        ["admin", "plans", code, "stripe-price"] => on!(method, {
            PUT => admin::set_plan_price(env, request, code).await,
        }),
        ["admin", "tenants", id, "sso", "domains", domain, "approve"] => on!(method, {
            POST => admin::approve_sso_domain(env, request, id, domain).await,
        }),
        ["admin", "tenants", id, "plan"] => {
            on!(method, { PUT => admin::assign_plan(env, request, id).await })
        }

        _ => Err(no_route(request)),
    }
}

/// A database round trip, and a write that changes nothing: a database can answer reads
/// while it refuses every write (a read-only token, a Turso database over its quota), and
/// Tollgate cannot serve a request without writing.
async fn health(env: &Env) -> ApiResult<Response> {
    env.db.execute(sql!("SELECT 1")).await?;
    env.db
        .execute(sql!(
            "UPDATE schema_migrations SET version = version WHERE 0"
        ))
        .await?;
    Ok(ok(&json!({ "status": "ok" })))
}

fn no_route(request: &ApiRequest) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method, request.path),
    )
}

fn method_not_allowed(allowed: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route answers {}", allowed.join(", ")),
    )
    .with_details(json!({ "allowed": allowed }))
    .with_header(http::header::ALLOW, allowed.join(", "))
}
