//! Browsers behind the proxy: forward-auth sends one without credentials to the console's
//! sign-in page, the sign-in sets a session cookie for every host under the cookie domain
//! and returns the browser where it was going, the cookie passes forward-auth, and
//! signing out ends the session.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app_with};

use crate::support::header;

const PUBLIC_URL: &str = "http://auth.tollgate.test";

/// A server whose sign-in cookie covers `tollgate.test` over plain HTTP.
async fn app() -> TestApp {
    spawn_app_with(|config| {
        config.public_url = PUBLIC_URL.into();
        config.cookie_domain = Some("tollgate.test".into());
        config.cookie_secure = false;
    })
    .await
}

/// The subrequest a proxy sends when a browser asks for `url` on `host`.
fn browser_check(app: &TestApp, host: &str, uri: &str) -> RequestBuilder {
    app.request(Method::GET, "auth/verify")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
}

fn console(app: &TestApp, method: Method, path: &str) -> RequestBuilder {
    app.client
        .request(method, format!("{}/console{path}", app.base_url))
}

/// Signs `user` in through the console's form; the answer.
async fn sign_in(app: &TestApp, user: &TestUser, return_to: &str) -> Response {
    console(app, Method::POST, "/sign-in")
        .form(&[
            ("tenant", user.tenant_slug.as_str()),
            ("email", user.email.as_str()),
            ("password", user.password.as_str()),
            ("return_to", return_to),
        ])
        .send()
        .await
        .unwrap()
}

/// The `Set-Cookie` values of `response`, and the `Cookie` header a browser would send back.
fn cookies(response: &Response) -> (Vec<String>, String) {
    let set: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let sent = set
        .iter()
        .map(|cookie| cookie.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    (set, sent)
}

fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> &'a str {
    cookie_header
        .split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap()
}

#[tokio::test]
async fn a_browser_without_credentials_signs_in_and_comes_back_with_a_cookie_that_passes() {
    let app = app().await;
    let owner = app.register("acme").await;

    let refused = browser_check(&app, "comfy.tollgate.test", "/?workflow=1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FOUND);
    assert_eq!(
        header(&refused, "location").unwrap(),
        format!(
            "{PUBLIC_URL}/console/sign-in?return_to=http%3A%2F%2Fcomfy.tollgate.test%2F%3Fworkflow%3D1"
        )
    );

    let page = console(
        &app,
        Method::GET,
        "/sign-in?return_to=http%3A%2F%2Fcomfy.tollgate.test%2F%3Fworkflow%3D1",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("value=\"http://comfy.tollgate.test/?workflow=1\""),
        "{html}"
    );

    let signed_in = sign_in(&app, &owner, "http://comfy.tollgate.test/?workflow=1").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&signed_in, "location").unwrap(),
        "http://comfy.tollgate.test/?workflow=1"
    );
    let (set, sent) = cookies(&signed_in);
    assert_eq!(set.len(), 2, "{set:?}");
    let session = set
        .iter()
        .find(|c| c.starts_with("tollgate_session="))
        .unwrap();
    for attribute in ["Path=/", "SameSite=Lax", "Domain=tollgate.test", "HttpOnly"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    assert!(
        !session.contains("Secure"),
        "plain HTTP was configured: {session}"
    );
    let csrf = set
        .iter()
        .find(|c| c.starts_with("tollgate_csrf="))
        .unwrap();
    assert!(!csrf.contains("HttpOnly"), "the page reads the CSRF token");

    let passed = browser_check(&app, "comfy.tollgate.test", "/ws")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&passed, "x-tollgate-user-id").unwrap(),
        owner.user_id
    );
    assert_eq!(header(&passed, "x-tollgate-auth").unwrap(), "session");
    expect_status(passed, StatusCode::OK).await;
}

#[tokio::test]
async fn scripts_keep_the_401_and_no_redirect_leads_off_the_cookie_domain() {
    let app = app().await;
    let owner = app.register("acme").await;

    let script = app
        .request(Method::GET, "auth/verify")
        .header("x-forwarded-host", "comfy.tollgate.test")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-uri", "/")
        .send()
        .await
        .unwrap();
    expect_error(script, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let foreign = browser_check(&app, "tollgate.test.evil.test", "/")
        .send()
        .await
        .unwrap();
    expect_error(foreign, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let signed_in = sign_in(&app, &owner, "https://evil.test/steal").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&signed_in, "location").unwrap(), "/console");
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_and_sets_nothing() {
    let app = app().await;
    let owner = app.register("acme").await;
    let wrong = TestUser {
        password: "not the password at all".into(),
        ..owner
    };

    let answer = sign_in(&app, &wrong, "/console").await;

    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(answer.headers().get("set-cookie").is_none());
    let html = answer.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains(&wrong.email), "the email is kept: {html}");
    assert!(
        !html.contains(&wrong.password),
        "the password is not echoed"
    );
}

#[tokio::test]
async fn api_calls_that_change_state_with_the_cookie_need_its_csrf_token() {
    let app = app().await;
    let owner = app.register("acme").await;
    let (_, sent) = cookies(&sign_in(&app, &owner, "/console").await);
    let csrf = cookie_value(&sent, "tollgate_csrf").to_owned();
    let create_key = || {
        app.request(Method::POST, "api-keys")
            .header("cookie", &sent)
            .json(&json!({ "name": "from the console", "scopes": ["jobs:read"] }))
    };

    let me = app
        .request(Method::GET, "auth/me")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(me, StatusCode::OK).await["user"]["id"],
        owner.user_id.as_str()
    );

    let forged = create_key().send().await.unwrap();
    expect_error(forged, StatusCode::FORBIDDEN, "csrf_token_invalid").await;
    let wrong = create_key()
        .header("x-csrf-token", "not-the-token")
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::FORBIDDEN, "csrf_token_invalid").await;

    let made = create_key()
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    expect_status(made, StatusCode::CREATED).await;
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookies() {
    let app = app().await;
    let owner = app.register("acme").await;
    let (_, sent) = cookies(&sign_in(&app, &owner, "/console").await);
    let csrf = cookie_value(&sent, "tollgate_csrf").to_owned();

    let home = console(&app, Method::GET, "")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(
        home.text().await.unwrap().contains(&csrf),
        "the sign-out form carries the token"
    );

    let forged = console(&app, Method::POST, "/sign-out")
        .header("cookie", &sent)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let signed_out = console(&app, Method::POST, "/sign-out")
        .header("cookie", &sent)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&signed_out, "location").unwrap(), "/console/sign-in");
    let (cleared, _) = cookies(&signed_out);
    assert_eq!(cleared.len(), 2);
    assert!(
        cleared.iter().all(|cookie| cookie.contains("Max-Age=0")),
        "{cleared:?}"
    );

    let after = browser_check(&app, "comfy.tollgate.test", "/")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::FOUND,
        "the old cookie no longer passes"
    );
    let home = console(&app, Method::GET, "")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
}

/// The path and query of a mailed link, which must lead to the console under the public URL.
fn console_link(link: &str, page: &str) -> String {
    let path = link
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{link} is not under {PUBLIC_URL}"));
    assert!(
        path.starts_with(&format!("/console/{page}?token=")),
        "{link}"
    );
    path.trim_start_matches("/console").to_owned()
}

async fn mailed_link(app: &TestApp, recipient: &str, template: &str) -> String {
    app.mailbox(recipient)
        .await
        .into_iter()
        .rev()
        .find(|(kind, _)| kind == template)
        .unwrap_or_else(|| panic!("no {template} mail to {recipient}"))
        .1["link"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Response {
    console(app, Method::POST, path)
        .form(fields)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_up_in_the_console_creates_the_organisation_and_signs_the_browser_in() {
    let app = app().await;
    let form = |slug: &'static str| {
        [
            ("tenant_name", "Initech"),
            ("tenant_slug", slug),
            ("name", "Peter"),
            ("email", "peter@initech.test"),
            ("password", "correct horse battery staple"),
        ]
    };

    let refused = post_form(&app, "/sign-up", &form("Not A Slug!")).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(
        html.contains("value=\"Initech\""),
        "the fields are kept: {html}"
    );
    let tenants = app
        .query(
            "SELECT COUNT(*) FROM tenants WHERE name = 'Initech'",
            vec![],
        )
        .await;
    assert_eq!(tenants[0][0], 0, "a refused sign-up creates nothing");

    let created = post_form(&app, "/sign-up", &form("initech")).await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&created, "location").unwrap(), "/console");
    let (_, sent) = cookies(&created);
    let home = console(&app, Method::GET, "")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    let html = home.text().await.unwrap();
    assert!(html.contains("<strong>initech</strong> (owner)"), "{html}");
}

#[tokio::test]
async fn a_mailed_invitation_opens_the_console_and_the_invitee_joins_signed_in() {
    let app = app().await;
    let owner = app.register("acme").await;
    let invited = app
        .post(
            "invitations",
            &owner.access_token,
            &json!({ "email": "new@acme.test", "role": "member" }),
        )
        .await;
    expect_status(invited, StatusCode::CREATED).await;
    let link = console_link(
        &mailed_link(&app, "new@acme.test", "invitation").await,
        "accept-invitation",
    );
    let token = link.split("token=").nth(1).unwrap().to_owned();

    let page = console(&app, Method::GET, &link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(&format!("value=\"{token}\""))
    );

    let short = post_form(
        &app,
        "/accept-invitation",
        &[("token", &token), ("name", "New"), ("password", "short")],
    )
    .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let joined = post_form(
        &app,
        "/accept-invitation",
        &[
            ("token", &token),
            ("name", "New"),
            ("password", "a long enough password"),
        ],
    )
    .await;
    assert_eq!(joined.status(), StatusCode::SEE_OTHER);
    let (_, sent) = cookies(&joined);
    let me = app
        .request(Method::GET, "auth/me")
        .header("cookie", &sent)
        .send()
        .await
        .unwrap();
    let me = expect_status(me, StatusCode::OK).await;
    assert_eq!(me["user"]["email"], "new@acme.test");
    assert_eq!(me["role"], "member");
}

#[tokio::test]
async fn a_forgotten_password_is_chosen_again_from_the_mailed_link() {
    let app = app().await;
    let owner = app.register("acme").await;

    let asked = post_form(
        &app,
        "/forgot-password",
        &[("tenant", "acme"), ("email", &owner.email)],
    )
    .await;
    assert_eq!(asked.status(), StatusCode::OK);
    assert!(asked.text().await.unwrap().contains("Check your mail"));
    let link = console_link(
        &mailed_link(&app, &owner.email, "password_reset").await,
        "reset-password",
    );
    let token = link.split("token=").nth(1).unwrap().to_owned();

    let changed = post_form(
        &app,
        "/reset-password",
        &[("token", &token), ("password", "an entirely new password")],
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert!(changed.text().await.unwrap().contains("Password changed"));

    let renewed = TestUser {
        password: "an entirely new password".into(),
        ..owner
    };
    assert_eq!(
        sign_in(&app, &renewed, "/console").await.status(),
        StatusCode::SEE_OTHER
    );
    let reused = post_form(
        &app,
        "/reset-password",
        &[("token", &token), ("password", "yet another new password")],
    )
    .await;
    assert!(reused.status().is_client_error(), "a link works once");
}

#[tokio::test]
async fn an_email_address_is_verified_from_the_mailed_link_by_a_button() {
    let app = app().await;
    let owner = app.register("acme").await;
    let link = console_link(
        &mailed_link(&app, &owner.email, "verify_email").await,
        "verify-email",
    );
    let token = link.split("token=").nth(1).unwrap().to_owned();

    let page = console(&app, Method::GET, &link).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Verify my address"));
    let me = expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        me["user"]["email_verified"], false,
        "opening the link changes nothing"
    );

    let verified = post_form(&app, "/verify-email", &[("token", &token)]).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let me = expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["user"]["email_verified"], true);
}
