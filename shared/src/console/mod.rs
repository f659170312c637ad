//! The console: the pages people use in a browser, served by Tollgate under `/console` on
//! every runtime. Pages are plain HTML forms that work without script; the rules they
//! apply are the capabilities' own (sign-in and sign-out are [`crate::auth::browser`]'s).
//!
//! - `GET /console/sign-in?return_to=…`: the sign-in form. `POST` signs in and sends the
//!   browser back where it was going (a URL forward-auth vouched for, checked again).
//! - `POST /console/sign-out`: ends the session (the form carries its CSRF token).
//! - `/console/sign-up`, `/console/accept-invitation?token=…`, `/console/forgot-password`,
//!   `/console/reset-password?token=…`, `/console/verify-email?token=…` ([`account`]): the
//!   pages the emails link to, each posting to the API's own handler.
//! - `GET /console`: the signed-in console (or the sign-in page): a shell whose script
//!   (`/console/app.js`, with the helpers it shares with the operator's in `/console/ui.js`)
//!   fills each panel with one call of the API, made with the session cookie and the CSRF
//!   token. Pages: `#overview` (credits and usage with a chart per day), `#jobs` (recent
//!   jobs, refreshed while one runs), `#llm` (the models the caller may call and recent
//!   calls; for owners and admins also the provider keys, the tenant's own models and its
//!   policy), `#credits` (the ledger, and for owners and admins the alert thresholds and
//!   auto top-up), `#keys` (API keys: create, the secret shown once, revoke), and for
//!   owners and admins `#users` (members and invitations), `#workers` (worker pools with
//!   their queue, runners online and the month's usage, runner tokens shown once, and
//!   moving a bot to another), `#webhooks` (endpoints, the secret shown once, a test
//!   message, the delivery log and redelivery), `#audit` (the log with a filter, and its
//!   tamper check), `#billing` (the plan, checkout, the Stripe portal and invoices) and
//!   `#settings` (name, custom domain and brand; single sign-on: providers, domains and the
//!   sign-in policy). The sign-in page offers the identity providers of the tenant its
//!   domain or `?tenant=` names.
//! - `GET /console/admin` ([`operator`]): the platform operator's console.
//!
//! Every page wears a [`Look`]: a tenant's brand when reached at its subdomain or custom
//! domain (and, signed in, the brand of the caller's own tenant), else Tollgate's own.

use bytes::Bytes;
use http::{Method, StatusCode, header};

mod account;
mod operator;

pub(crate) use crate::api::escape_html as escape;
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response},
    auth::browser,
    auth::sso,
    error::ApiResult,
    tenancy::branding::Branding,
};

/// Answers `/console` and the paths under it (`path` is what follows `/console`).
pub async fn route(env: &Env, request: &ApiRequest, path: &str) -> Response {
    let path = path.trim_end_matches('/');
    if request.method == Method::GET {
        match path {
            "/app.js" => return static_script(Bytes::from_static(include_bytes!("app.js"))),
            "/ui.js" => return static_script(Bytes::from_static(include_bytes!("ui.js"))),
            "/operator.js" => return operator::script(),
            _ => {}
        }
    }
    let console = request.method == Method::GET && path.is_empty();
    // The pages before sign-in wear the brand of the tenant whose domain they are reached
    // at; the signed-in console wears the caller's own (`home`).
    let look = match console {
        true => Ok(None),
        false => Branding::for_host(env, request).await,
    };
    let look = &Look(look.unwrap_or_default());
    let answer = match (request.method.clone(), path) {
        (Method::GET, "") => home(env, request).await,
        (Method::GET, "/sign-in") => {
            let tenant = request.query_param("tenant");
            let offered = sso::providers::offered(env, request, tenant.as_deref()).await;
            Ok(sign_in_page(
                look,
                StatusCode::OK,
                &request.query_param("return_to").unwrap_or_default(),
                tenant.as_deref().unwrap_or_default(),
                "",
                None,
                &offered.unwrap_or_default(),
            ))
        }
        (Method::POST, "/sign-in") => sign_in(env, request, look).await,
        (Method::POST, "/sign-out") => sign_out(env, request).await,
        (Method::GET, "/sign-up") => Ok(account::sign_up_page(look, StatusCode::OK, &[], None)),
        (Method::POST, "/sign-up") => account::sign_up(env, request, look).await,
        (Method::GET, "/accept-invitation") => Ok(account::invitation_page(
            look,
            StatusCode::OK,
            &request.query_param("token").unwrap_or_default(),
            "",
            None,
        )),
        (Method::POST, "/accept-invitation") => {
            account::accept_invitation(env, request, look).await
        }
        (Method::GET, "/forgot-password") => {
            Ok(account::forgot_page(look, StatusCode::OK, "", "", None))
        }
        (Method::POST, "/forgot-password") => account::forgot_password(env, request, look).await,
        (Method::GET, "/reset-password") => Ok(account::reset_page(
            look,
            StatusCode::OK,
            &request.query_param("token").unwrap_or_default(),
            None,
        )),
        (Method::POST, "/reset-password") => account::reset_password(env, request, look).await,
        (Method::GET, "/verify-email") => Ok(account::verify_page(
            look,
            StatusCode::OK,
            &request.query_param("token").unwrap_or_default(),
            None,
        )),
        (Method::POST, "/verify-email") => account::verify_email(env, request, look).await,
        (Method::GET, "/admin") => Ok(operator::shell(look)),
        _ => Ok(page(
            look,
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>There is no such page.</p><p><a href=\"/console\">Back to the console</a></p>",
        )),
    };
    answer.unwrap_or_else(|error| {
        let status = error.status;
        page(
            look,
            status,
            "Something went wrong",
            &format!("<p role=\"alert\">{}</p>", escape(&error.message)),
        )
    })
}

/// How a page looks: Tollgate's own, or a tenant's brand.
#[derive(Default)]
pub(crate) struct Look(Option<Branding>);

impl Look {
    /// Whether the page is reached at a tenant's own domain (which then names the tenant).
    fn names_tenant(&self) -> bool {
        self.0.is_some()
    }

    fn name(&self) -> &str {
        self.0
            .as_ref()
            .map_or("Tollgate", |brand| brand.name.as_str())
    }

    fn accent(&self) -> &str {
        self.0
            .as_ref()
            .and_then(|brand| brand.accent.as_deref())
            .unwrap_or(DEFAULT_ACCENT)
    }

    /// The logo and name above every page of a branded console.
    fn banner(&self) -> String {
        let Some(brand) = &self.0 else {
            return String::new();
        };
        let logo = brand
            .logo_url
            .as_deref()
            .map(|url| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", escape(url)))
            .unwrap_or_default();
        format!(
            "<p class=\"brand\">{logo}<span id=\"brand-name\">{}</span></p>\n",
            escape(&brand.name)
        )
    }
}

/// Tollgate's own accent: a blue with 6.7:1 contrast against white.
const DEFAULT_ACCENT: &str = "#1d4ed8";

/// The fields of a form body (`application/x-www-form-urlencoded`).
pub(crate) fn form(request: &ApiRequest) -> ApiResult<Vec<(String, String)>> {
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the console's forms are sent as application/x-www-form-urlencoded",
        ));
    }
    Ok(form_urlencoded::parse(&request.body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect())
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.trim().is_empty())
}

async fn sign_in(env: &Env, request: &ApiRequest, look: &Look) -> ApiResult<Response> {
    let fields = form(request)?;
    let return_to = field(&fields, "return_to").unwrap_or_default();
    let tenant = field(&fields, "tenant");
    let email = field(&fields, "email").unwrap_or_default();
    let password = field(&fields, "password").unwrap_or_default();
    match browser::sign_in(env, request, email, password, tenant).await {
        Ok(cookies) => {
            let target =
                browser::safe_return(&env.config, return_to).unwrap_or_else(|| "/console".into());
            Ok(see_other(&target, &cookies))
        }
        Err(refused) if refused.status.is_client_error() => Ok(sign_in_page(
            look,
            refused.status,
            return_to,
            tenant.unwrap_or_default(),
            email,
            Some(&refused.message),
            &sso::providers::offered(env, request, tenant).await?,
        )),
        Err(error) => Err(error),
    }
}

async fn sign_out(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let fields = form(request)?;
    let cookies = browser::sign_out(env, request, field(&fields, "csrf")).await?;
    Ok(see_other(browser::SIGN_IN_PATH, &cookies))
}

async fn home(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let Some(principal) = browser::session_principal(env, request).await? else {
        return Ok(see_other(browser::SIGN_IN_PATH, &[]));
    };
    let crate::auth::principal::Credential::Session { session_id } = &principal.credential else {
        return Ok(see_other(browser::SIGN_IN_PATH, &[]));
    };
    let csrf = browser::csrf_token(&env.config, session_id);
    let body = format!(
        "<header><p>Signed in to <strong>{tenant}</strong> ({role}).</p>
<nav aria-label=\"Console\"><a href=\"#overview\">Overview</a> <a href=\"#jobs\">Jobs</a> <a href=\"#llm\">LLM</a> <a href=\"#credits\">Credits</a> <a href=\"#keys\">API keys</a> <a href=\"#users\" data-admin>People</a> <a href=\"#workers\" data-admin>Workers</a> <a href=\"#webhooks\" data-admin>Webhooks</a> <a href=\"#audit\" data-admin>Audit log</a> <a href=\"#billing\" data-admin>Billing</a> <a href=\"#settings\" data-admin>Organisation</a></nav>
<form method=\"post\" action=\"/console/sign-out\">
  <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">
  <button type=\"submit\" class=\"secondary\">Sign out</button>
</form></header>
<div id=\"view\" data-role=\"{role}\" aria-live=\"polite\"><p>Loading…</p></div>
<script type=\"module\" src=\"/console/app.js\"></script>",
        tenant = escape(&principal.tenant_slug),
        role = escape(principal.role.as_str()),
        csrf = escape(&csrf),
    );
    // Signed in, the console wears the brand of the caller's own tenant, wherever reached.
    let look = Look(Some(Branding::of_tenant(env, &principal.tenant_id).await?));
    Ok(page(&look, StatusCode::OK, "Console", &body))
}

/// One of the console's scripts, the same for everyone.
fn static_script(script: Bytes) -> Response {
    http::Response::builder()
        .header(header::CONTENT_TYPE, "text/javascript; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .header("x-content-type-options", "nosniff")
        .body(script)
        .expect("static response parts are valid")
}

/// The sign-in form, and a button per identity provider of the tenant named (`providers`:
/// name and start path), which brings the browser back to `return_to` too.
fn sign_in_page(
    look: &Look,
    status: StatusCode,
    return_to: &str,
    tenant: &str,
    email: &str,
    problem: Option<&str>,
    providers: &[(String, String)],
) -> Response {
    // At a tenant's own domain the domain names the organisation.
    let organisation = Input::text("tenant", "Organisation", tenant, "organization").optional();
    let credentials = [
        Input::text("email", "Email", email, "username").typed("email"),
        Input::password("password", "Password", "current-password"),
    ];
    let inputs: Vec<Input> = if look.names_tenant() {
        credentials.into_iter().collect()
    } else {
        std::iter::once(organisation).chain(credentials).collect()
    };
    form_page(
        look,
        status,
        "Sign in",
        "/console/sign-in",
        &inputs,
        &[("return_to", return_to)],
        "Sign in",
        problem,
        &format!(
            "{}<p><a href=\"/console/forgot-password\">Forgot your password?</a> · \
             <a href=\"/console/sign-up\">Create an organisation</a></p>",
            single_sign_on(providers, return_to)
        ),
    )
}

fn single_sign_on(providers: &[(String, String)], return_to: &str) -> String {
    if providers.is_empty() {
        return String::new();
    }
    let back: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    let links: String = providers
        .iter()
        .map(|(name, start)| {
            let href = if return_to.is_empty() {
                start.clone()
            } else {
                format!("{start}&{back}")
            };
            format!(
                "<p><a class=\"button\" href=\"{}\">Sign in with {}</a></p>",
                escape(&href),
                escape(name)
            )
        })
        .collect();
    format!("<h2>Or with your organisation's account</h2>\n{links}")
}

/// One field of a form.
pub(crate) struct Input<'a> {
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    value: &'a str,
    autocomplete: &'a str,
    required: bool,
}

impl<'a> Input<'a> {
    pub(crate) fn text(
        name: &'a str,
        label: &'a str,
        value: &'a str,
        autocomplete: &'a str,
    ) -> Self {
        Input {
            name,
            label,
            kind: "text",
            value,
            autocomplete,
            required: true,
        }
    }

    /// A password field, never filled back in.
    pub(crate) fn password(name: &'a str, label: &'a str, autocomplete: &'a str) -> Self {
        Input {
            kind: "password",
            ..Input::text(name, label, "", autocomplete)
        }
    }

    pub(crate) fn typed(self, kind: &'a str) -> Self {
        Input { kind, ..self }
    }

    pub(crate) fn optional(self) -> Self {
        Input {
            required: false,
            ..self
        }
    }

    fn html(&self) -> String {
        format!(
            "<label for=\"{name}\">{label}</label>\n<input id=\"{name}\" name=\"{name}\" type=\"{kind}\" value=\"{value}\" autocomplete=\"{autocomplete}\"{required}>",
            name = escape(self.name),
            label = escape(self.label),
            kind = escape(self.kind),
            value = escape(self.value),
            autocomplete = escape(self.autocomplete),
            required = if self.required { " required" } else { "" },
        )
    }
}

/// A page with one form posting to `action`: its problem first (an API error's message),
/// then the fields, the hidden values, the button, and `after` (links, as HTML).
#[allow(clippy::too_many_arguments)]
pub(crate) fn form_page(
    look: &Look,
    status: StatusCode,
    title: &str,
    action: &str,
    inputs: &[Input<'_>],
    hidden: &[(&str, &str)],
    submit: &str,
    problem: Option<&str>,
    after: &str,
) -> Response {
    let alert = problem
        .map(|message| format!("<p role=\"alert\" class=\"alert\">{}</p>", escape(message)))
        .unwrap_or_default();
    let hidden: String = hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let inputs: Vec<String> = inputs.iter().map(Input::html).collect();
    let body = format!(
        "{alert}<form method=\"post\" action=\"{action}\">\n{hidden}{inputs}\n<button type=\"submit\">{submit}</button>\n</form>\n{after}",
        action = escape(action),
        inputs = inputs.join("\n"),
        submit = escape(submit),
    );
    page(look, status, title, &body)
}

/// A whole page: small, readable on a phone, no script, nothing loaded from elsewhere.
pub(crate) fn page(look: &Look, status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>{title} · {name}</title>
<style>
:root{{--accent:{accent}}}
body{{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#111}}
main{{max-width:48rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}}
h1{{font-size:1.4rem;margin-top:0}} h2{{font-size:1.1rem}}
nav a,main a{{color:var(--accent)}} nav a{{margin-right:1rem}} nav a[aria-current]{{font-weight:700;color:#111}}
.scroll{{overflow-x:auto}}
.panel{{border-top:1px solid #ddd;padding-top:.5rem;margin-top:1rem}}
table{{border-collapse:collapse;width:100%;font-size:.95rem}} th,td{{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #eee}}
.bar{{fill:var(--accent)}} figure{{margin:0}} svg{{width:100%;max-width:20rem;height:auto;background:#f6f7f9}}
.secret{{display:block;font-family:monospace;word-break:break-all;background:#fef3c7;padding:.5rem}}
button.secondary{{background:#fff;color:var(--accent);border:1px solid var(--accent);margin-top:.5rem}}
label{{display:block;margin-top:1rem;font-weight:600}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font:inherit;border:1px solid #888;border-radius:4px}} input[type=color]{{height:2.8rem;padding:.2rem}} input[type=checkbox]{{width:auto}}
select{{font:inherit;padding:.4rem;border:1px solid #888;border-radius:4px}}
button{{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit;background:var(--accent);color:#fff;border:0;border-radius:4px}}
.brand{{display:flex;align-items:center;gap:.6rem;font-weight:700;font-size:1.1rem;margin:0 0 1rem}} .logo{{max-height:2.5rem;max-width:10rem}}
:focus-visible{{outline:3px solid #f59e0b;outline-offset:2px}}
a.button{{display:inline-block;padding:.6rem 1.2rem;background:var(--accent);color:#fff;border-radius:4px;text-decoration:none}}
.alert{{background:#fee2e2;color:#7f1d1d;padding:.6rem;border-radius:4px}}
</style></head>
<body><main>{banner}<h1>{title}</h1>
{body}
</main></body></html>
",
        title = escape(title),
        name = escape(look.name()),
        accent = look.accent(),
        banner = look.banner(),
    );
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' https: data:; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .body(Bytes::from(html))
        .expect("static response parts are valid")
}

/// 303 to `location`, setting `cookies`: a form's answer.
pub(crate) fn see_other(location: &str, cookies: &[String]) -> Response {
    crate::api::redirect(StatusCode::SEE_OTHER, location, cookies)
}
