//! The console's account pages: signing up, accepting an invitation, a forgotten password,
//! a new password, verifying an email address. Each form is posted to the very handler of
//! the API that does the same (its fields become the API's JSON body), so a form gets the
//! API's validation, limits, audit and error messages, and no rule lives here twice.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value as Json, json};

use super::{Input, Look, escape, field, form, form_page, page, see_other};
use crate::{
    Env,
    api::{ApiRequest, Response},
    auth::{browser, password, recovery},
    error::ApiResult,
    tenancy::{invitations, tenants},
};

/// The form's request as the API's: the same client, with `body` as its JSON.
fn as_api_request(request: &ApiRequest, body: Json) -> ApiRequest {
    let mut headers = request.headers.clone();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.remove(header::COOKIE);
    ApiRequest {
        method: Method::POST,
        path: request.path.clone(),
        query: String::new(),
        headers,
        body: Bytes::from(body.to_string()),
        client_ip: request.client_ip.clone(),
    }
}

/// The JSON an API handler answered.
fn answered(response: &Response) -> Json {
    serde_json::from_slice(response.body()).unwrap_or(Json::Null)
}

/// A field of the posted form, or empty.
fn posted<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    field(fields, name).unwrap_or_default()
}

/// After a sign-up or an accepted invitation: the browser carries the new session.
fn signed_in_from(env: &Env, response: &Response) -> ApiResult<Response> {
    let body = answered(response);
    match body["access_token"].as_str() {
        Some(token) => Ok(see_other(
            "/console",
            &browser::cookies_for_access_token(env, token)?,
        )),
        None => Ok(see_other(browser::SIGN_IN_PATH, &[])),
    }
}

fn new_password_label() -> String {
    format!(
        "New password (at least {} characters)",
        password::MIN_LENGTH
    )
}

fn message_page(look: &Look, title: &str, message: &str) -> Response {
    page(
        look,
        StatusCode::OK,
        title,
        &format!(
            "<p role=\"status\">{}</p><p><a href=\"/console/sign-in\">Sign in</a></p>",
            escape(message)
        ),
    )
}

pub(super) fn sign_up_page(
    look: &Look,
    status: StatusCode,
    fields: &[(String, String)],
    problem: Option<&str>,
) -> Response {
    let password_label = new_password_label();
    let inputs = [
        Input::text(
            "tenant_name",
            "Organisation",
            posted(fields, "tenant_name"),
            "organization",
        ),
        Input::text(
            "tenant_slug",
            "Short name (in addresses: letters, digits, dashes)",
            posted(fields, "tenant_slug"),
            "off",
        ),
        Input::text("name", "Your name", posted(fields, "name"), "name"),
        Input::text("email", "Email", posted(fields, "email"), "email").typed("email"),
        Input::password("password", &password_label, "new-password"),
    ];
    form_page(
        look,
        status,
        "Create an organisation",
        "/console/sign-up",
        &inputs,
        &[],
        "Create",
        problem,
        "<p>Already in one? <a href=\"/console/sign-in\">Sign in</a></p>",
    )
}

/// `POST /console/sign-up`: `POST auth/register`, then the browser is signed in.
pub(super) async fn sign_up(env: &Env, request: &ApiRequest, look: &Look) -> ApiResult<Response> {
    let fields = form(request)?;
    let body = json!({
        "tenant_name": posted(&fields, "tenant_name"),
        "tenant_slug": posted(&fields, "tenant_slug"),
        "name": posted(&fields, "name"),
        "email": posted(&fields, "email"),
        "password": posted(&fields, "password"),
    });
    match tenants::register(env, &as_api_request(request, body)).await {
        Ok(response) => signed_in_from(env, &response),
        Err(refused) if refused.status.is_client_error() => Ok(sign_up_page(
            look,
            refused.status,
            &fields,
            Some(&refused.message),
        )),
        Err(error) => Err(error),
    }
}

pub(super) fn invitation_page(
    look: &Look,
    status: StatusCode,
    token: &str,
    name: &str,
    problem: Option<&str>,
) -> Response {
    let password_label = new_password_label();
    let inputs = [
        Input::text("name", "Your name", name, "name"),
        Input::password("password", &password_label, "new-password"),
    ];
    form_page(
        look,
        status,
        "Join your organisation",
        "/console/accept-invitation",
        &inputs,
        &[("token", token)],
        "Join",
        problem,
        "",
    )
}

/// `POST /console/accept-invitation`: `POST invitations/accept`, then the browser is
/// signed in as the new member.
pub(super) async fn accept_invitation(
    env: &Env,
    request: &ApiRequest,
    look: &Look,
) -> ApiResult<Response> {
    let fields = form(request)?;
    let (token, name) = (posted(&fields, "token"), posted(&fields, "name"));
    let body = json!({ "token": token, "name": name, "password": posted(&fields, "password") });
    match invitations::accept(env, &as_api_request(request, body)).await {
        Ok(response) => signed_in_from(env, &response),
        Err(refused) if refused.status.is_client_error() => Ok(invitation_page(
            look,
            refused.status,
            token,
            name,
            Some(&refused.message),
        )),
        Err(error) => Err(error),
    }
}

pub(super) fn forgot_page(
    look: &Look,
    status: StatusCode,
    tenant: &str,
    email: &str,
    problem: Option<&str>,
) -> Response {
    let inputs = [
        Input::text("tenant", "Organisation", tenant, "organization").optional(),
        Input::text("email", "Email", email, "username").typed("email"),
    ];
    form_page(
        look,
        status,
        "Forgot your password?",
        "/console/forgot-password",
        &inputs,
        &[],
        "Mail me a link",
        problem,
        "",
    )
}

/// `POST /console/forgot-password`: `POST auth/forgot-password`, which answers alike
/// whether or not the account exists.
pub(super) async fn forgot_password(
    env: &Env,
    request: &ApiRequest,
    look: &Look,
) -> ApiResult<Response> {
    let fields = form(request)?;
    let (tenant, email) = (field(&fields, "tenant"), posted(&fields, "email"));
    let body = json!({ "tenant": tenant, "email": email });
    match recovery::forgot_password(env, &as_api_request(request, body)).await {
        Ok(_) => Ok(message_page(
            look,
            "Check your mail",
            "If this address has an account, a mail with a link to choose a new password is on its way.",
        )),
        Err(refused) if refused.status.is_client_error() => Ok(forgot_page(
            look,
            refused.status,
            tenant.unwrap_or_default(),
            email,
            Some(&refused.message),
        )),
        Err(error) => Err(error),
    }
}

pub(super) fn reset_page(
    look: &Look,
    status: StatusCode,
    token: &str,
    problem: Option<&str>,
) -> Response {
    let password_label = new_password_label();
    let inputs = [Input::password("password", &password_label, "new-password")];
    form_page(
        look,
        status,
        "Choose a new password",
        "/console/reset-password",
        &inputs,
        &[("token", token)],
        "Save",
        problem,
        "",
    )
}

/// `POST /console/reset-password`: `POST auth/reset-password`, which ends every session.
pub(super) async fn reset_password(
    env: &Env,
    request: &ApiRequest,
    look: &Look,
) -> ApiResult<Response> {
    let fields = form(request)?;
    let token = posted(&fields, "token");
    let body = json!({ "token": token, "password": posted(&fields, "password") });
    match recovery::reset_password(env, &as_api_request(request, body)).await {
        Ok(_) => Ok(message_page(
            look,
            "Password changed",
            "Your password is changed, and every session you had is ended.",
        )),
        Err(refused) if refused.status.is_client_error() => Ok(reset_page(
            look,
            refused.status,
            token,
            Some(&refused.message),
        )),
        Err(error) => Err(error),
    }
}

/// A button, not a link that acts: mail scanners open links, and a GET changes nothing.
pub(super) fn verify_page(
    look: &Look,
    status: StatusCode,
    token: &str,
    problem: Option<&str>,
) -> Response {
    form_page(
        look,
        status,
        "Verify your email address",
        "/console/verify-email",
        &[],
        &[("token", token)],
        "Verify my address",
        problem,
        "",
    )
}

/// `POST /console/verify-email`: `POST auth/verify-email`.
pub(super) async fn verify_email(
    env: &Env,
    request: &ApiRequest,
    look: &Look,
) -> ApiResult<Response> {
    let fields = form(request)?;
    let token = posted(&fields, "token");
    match recovery::verify_email(env, &as_api_request(request, json!({ "token": token }))).await {
        Ok(_) => Ok(message_page(
            look,
            "Address verified",
            "Your email address is verified.",
        )),
        Err(refused) if refused.status.is_client_error() => Ok(verify_page(
            look,
            refused.status,
            token,
            Some(&refused.message),
        )),
        Err(error) => Err(error),
    }
}
