//! Single sign-on against a real OpenID Connect provider on loopback (Authlib's
//! authorization server, `sso/provider.py`): the code flow with PKCE, state and nonce;
//! linking and auto-join; every way an ID token can be wrong; key rotation; a tenant that
//! requires SSO. The browser's part is played by a client that follows no redirect, so each
//! hop is seen.
//!
//! The provider is `tollgate_tests::oidc_provider`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::{Value, json};
use tollgate::secrets::Keyring;
use tollgate_tests::{
    PASSWORD, TestApp, TestUser, expect_error, expect_status,
    loopback::LoopbackServer,
    oidc_provider::{CLIENT_ID, CLIENT_SECRET, Provider},
    spawn_app_with,
};

const PUBLIC_URL: &str = "http://tollgate.sso.test";

async fn provider() -> Provider {
    Provider::start(&format!("{PUBLIC_URL}/api/v1/auth/sso/callback")).await
}

async fn app() -> TestApp {
    spawn_app_with(|config| {
        config.public_url = PUBLIC_URL.into();
        config.secrets = Keyring::parse("k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    })
    .await
}

/// Acme, with `provider` as its identity provider.
async fn acme_with(app: &TestApp, provider: &Provider) -> TestUser {
    let owner = app.register("acme").await;
    let response = app
        .post(
            "sso/providers",
            &owner.access_token,
            &json!({
                "name": "Forge ID",
                "kind": "oidc",
                "issuer": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
    owner
}

/// The operator vouches that acme owns `domain`.
async fn approve_domain(app: &TestApp, owner: &TestUser, domain: &str) {
    let response = app
        .post(
            "sso/domains",
            &owner.access_token,
            &json!({ "domain": domain }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
    let operator = app.platform_admin("ops@tollgate.test").await;
    let response = app
        .post(
            &format!(
                "admin/tenants/{}/sso/domains/{domain}/approve",
                owner.tenant_id
            ),
            &operator,
            &json!({}),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("{} has no Location", response.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// A browser's trip: start at Tollgate, through the provider, back to the callback (at
/// the test server, for the public URL's host); answers where the provider sent it back.
async fn to_the_callback(app: &TestApp, slug: &str) -> String {
    let browser = browser();
    let start = browser
        .get(app.url(&format!("auth/sso/{slug}/start?return_to=/console")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        StatusCode::FOUND,
        "{:?}",
        start.text().await
    );
    let at_provider = browser.get(location(&start)).send().await.unwrap();
    assert_eq!(at_provider.status(), StatusCode::FOUND);
    let back = location(&at_provider);
    let query = back
        .strip_prefix(&format!("{PUBLIC_URL}/api/v1/auth/sso/callback?"))
        .unwrap_or_else(|| panic!("the provider sent the browser to {back}"));
    app.url(&format!("auth/sso/callback?{query}"))
}

async fn sign_in(app: &TestApp, slug: &str) -> reqwest::Response {
    let callback = to_the_callback(app, slug).await;
    browser().get(callback).send().await.unwrap()
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|cookie| cookie.starts_with("tollgate_session="))
        .map(|cookie| cookie.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

/// The API's `GET auth/me` for the browser carrying `cookie`.
async fn me(app: &TestApp, cookie: &str) -> Value {
    let response = reqwest::Client::new()
        .get(app.url("auth/me"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await
}

async fn refused(app: &TestApp, status: StatusCode, code: &str) -> String {
    let response = sign_in(app, "acme").await;
    let body = expect_error(response, status, code).await;
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_existing_user_signs_in_with_the_provider_and_is_linked_not_duplicated() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.signs_in_as("p-ada", &owner.email).await;

    let response = sign_in(&app, "acme").await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response), "/console");
    let cookie = session_cookie(&response);
    assert_eq!(
        me(&app, &cookie).await["user"]["id"],
        owner.user_id.as_str()
    );
    // Linked by the provider's subject: a later sign-in finds the same user by it.
    provider.signs_in_as("p-ada", &owner.email).await;
    let again = sign_in(&app, "acme").await;
    assert_eq!(
        me(&app, &session_cookie(&again)).await["user"]["id"],
        owner.user_id.as_str()
    );
    let users = app
        .query(
            "SELECT COUNT(*) FROM users WHERE tenant_id = ?",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(users[0][0], 1);
    let actions = app
        .query(
            "SELECT action FROM audit_log WHERE tenant_id = ? ORDER BY seq",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    let actions: Vec<&str> = actions.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert!(actions.contains(&"sso.identity_linked"), "{actions:?}");
    assert_eq!(
        actions
            .iter()
            .filter(|action| **action == "auth.login")
            .count(),
        2,
        "one per SSO sign-in: {actions:?}"
    );
}

#[tokio::test]
async fn a_verified_person_of_a_proven_domain_joins_with_the_default_role() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    approve_domain(&app, &owner, "forge.example").await;
    let response = app
        .put(
            "sso/settings",
            &owner.access_token,
            &json!({ "required": false, "default_role": "viewer" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
    provider
        .signs_in_as("p-new", "newcomer@Forge.example")
        .await;

    let response = sign_in(&app, "acme").await;

    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "{:?}",
        response.text().await
    );
    let me = me(&app, &session_cookie(&response)).await;
    assert_eq!(me["user"]["email"], "newcomer@forge.example");
    assert_eq!(me["user"]["name"], "Ada Forge");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["tenant"]["id"], owner.tenant_id.as_str());
    assert_eq!(me["user"]["email_verified"], true);
}

#[tokio::test]
async fn a_person_of_a_domain_not_allowed_is_refused_and_nothing_is_written() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    approve_domain(&app, &owner, "forge.example").await;
    // A domain added but never proven lets nobody in either.
    let response = app
        .post(
            "sso/domains",
            &owner.access_token,
            &json!({ "domain": "unproven.example" }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;

    for email in ["mallory@elsewhere.example", "eve@unproven.example"] {
        provider.signs_in_as(email, email).await;
        let message = refused(&app, StatusCode::FORBIDDEN, "sso_domain_not_allowed").await;
        assert!(message.contains("not one of the domains"), "{message}");
    }
    let users = app
        .query(
            "SELECT COUNT(*) FROM users WHERE tenant_id = ?",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(users[0][0], 1);
}

#[tokio::test]
async fn a_user_of_another_tenant_is_never_signed_in_or_joined_by_it() {
    let provider = provider().await;
    let app = app().await;
    acme_with(&app, &provider).await;
    let globex = app.register("globex").await;
    provider.signs_in_as("p-globex", &globex.email).await;

    refused(&app, StatusCode::FORBIDDEN, "sso_domain_not_allowed").await;

    let links = app
        .query("SELECT COUNT(*) FROM sso_identities", vec![])
        .await;
    assert_eq!(links[0][0], 0);
}

#[tokio::test]
async fn every_wrong_id_token_is_refused_with_its_reason() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.signs_in_as("p-ada", &owner.email).await;

    for (fault, reason) in [
        ("audience", "for another client (aud)"),
        ("expired", "has expired"),
        ("signature", "signature does not verify"),
        ("nonce", "nonce is not this sign-in's"),
        ("unverified_email", "verified email"),
    ] {
        provider.next_token(fault).await;
        let message = refused(&app, StatusCode::UNAUTHORIZED, "sso_rejected").await;
        assert!(message.contains(reason), "{fault}: {message}");
    }
    // And then a good one goes through.
    let response = sign_in(&app, "acme").await;
    assert_eq!(response.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_state_is_used_once() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.signs_in_as("p-ada", &owner.email).await;
    let callback = to_the_callback(&app, "acme").await;

    let first = browser().get(&callback).send().await.unwrap();
    let replayed = browser().get(&callback).send().await.unwrap();
    let forged = browser()
        .get(app.url("auth/sso/callback?code=x&state=never-issued"))
        .send()
        .await
        .unwrap();

    assert_eq!(first.status(), StatusCode::FOUND);
    expect_error(replayed, StatusCode::BAD_REQUEST, "invalid_state").await;
    expect_error(forged, StatusCode::BAD_REQUEST, "invalid_state").await;
}

#[tokio::test]
async fn a_state_expires() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.signs_in_as("p-ada", &owner.email).await;
    let callback = to_the_callback(&app, "acme").await;

    app.advance_clock(tollgate::auth::sso::flow::ATTEMPT_TTL_SECONDS + 1);
    let late = browser().get(&callback).send().await.unwrap();

    expect_error(late, StatusCode::BAD_REQUEST, "invalid_state").await;
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.signs_in_as("p-ada", &owner.email).await;
    assert_eq!(sign_in(&app, "acme").await.status(), StatusCode::FOUND);
    assert_eq!(provider.key_set_fetches().await, 1);
    assert_eq!(sign_in(&app, "acme").await.status(), StatusCode::FOUND);
    assert_eq!(provider.key_set_fetches().await, 1, "the key set is kept");

    provider.control("rotate", json!({})).await;
    let response = sign_in(&app, "acme").await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(provider.key_set_fetches().await, 2);
}

#[tokio::test]
async fn an_es256_signed_id_token_is_accepted_and_a_forged_one_refused() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    provider.control("rotate", json!({ "alg": "ES256" })).await;
    provider.signs_in_as("p-ada", &owner.email).await;

    let response = sign_in(&app, "acme").await;
    provider.next_token("audience").await;
    let message = refused(&app, StatusCode::UNAUTHORIZED, "sso_rejected").await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(message.contains("(aud)"), "{message}");
}

#[tokio::test]
async fn a_tenant_that_requires_sso_refuses_its_members_passwords_but_not_its_owners() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    let member = app.add_user(&owner, "max", "member").await;
    let response = app
        .put(
            "sso/settings",
            &owner.access_token,
            &json!({ "required": true }),
        )
        .await;
    assert_eq!(
        expect_status(response, StatusCode::OK).await["required"],
        true
    );

    let member_login = app.login("acme", &member.email, PASSWORD).await;
    let owner_login = app.login("acme", &owner.email, PASSWORD).await;

    expect_error(member_login, StatusCode::FORBIDDEN, "sso_required").await;
    expect_status(owner_login, StatusCode::OK).await;
    provider.signs_in_as("p-max", &member.email).await;
    let response = sign_in(&app, "acme").await;
    assert_eq!(
        me(&app, &session_cookie(&response)).await["user"]["id"],
        member.user_id.as_str()
    );
}

#[tokio::test]
async fn providers_are_for_owners_and_admins_and_keep_their_secret() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    let member = app.add_user(&owner, "max", "member").await;

    let listed = expect_status(
        app.get("sso/providers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let by_member = app
        .post(
            "sso/providers",
            &member.access_token,
            &json!({ "name": "Mine", "kind": "google", "client_id": "x", "client_secret": "y" }),
        )
        .await;
    let bad_kind = app
        .post(
            "sso/providers",
            &owner.access_token,
            &json!({ "name": "Saml", "kind": "saml", "client_id": "x", "client_secret": "y" }),
        )
        .await;
    let entra = app
        .post(
            "sso/providers",
            &owner.access_token,
            &json!({ "name": "Entra", "kind": "microsoft", "microsoft_tenant": "organizations", "client_id": "x", "client_secret": "y" }),
        )
        .await;

    assert_eq!(listed["data"][0]["name"], "Forge ID");
    assert_eq!(
        listed["data"][0]["scopes"],
        json!(["openid", "email", "profile"])
    );
    assert!(!listed.to_string().contains(CLIENT_SECRET));
    expect_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(
        bad_kind,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let entra = expect_status(entra, StatusCode::CREATED).await;
    assert_eq!(
        entra["issuer"],
        "https://login.microsoftonline.com/organizations/v2.0"
    );
    // With two providers, a sign-in names one.
    let unnamed = browser()
        .get(app.url("auth/sso/acme/start"))
        .send()
        .await
        .unwrap();
    expect_error(unnamed, StatusCode::BAD_REQUEST, "provider_required").await;
}

/// TXT records a resolver knows, by name.
type Records = Arc<Mutex<Vec<(String, String)>>>;

/// A DNS-over-HTTPS resolver's JSON API (the format public resolvers answer with
/// `accept: application/dns-json`), knowing the TXT records the test publishes: the one
/// part of a domain's proof no local service can play, since it is the DNS of a real domain.
async fn resolver() -> (LoopbackServer, Records) {
    let records: Records = Arc::default();
    let known = records.clone();
    let server = LoopbackServer::start(move |parts, _| {
        let query: HashMap<String, String> =
            reqwest::Url::parse(&format!("http://resolver{}", parts.uri))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
        let asks_txt = query.get("type").map(String::as_str) == Some("TXT");
        let name = query.get("name").cloned().unwrap_or_default();
        let answers: Vec<Value> = known
            .lock()
            .unwrap()
            .iter()
            .filter(|(record, _)| asks_txt && *record == name)
            .map(|(record, text)| {
                json!({ "name": record, "type": 16, "TTL": 300, "data": format!("\"{text}\"") })
            })
            .collect();
        let status = if answers.is_empty() { 3 } else { 0 };
        http::Response::builder()
            .header("content-type", "application/dns-json")
            .body(Full::new(Bytes::from(
                json!({ "Status": status, "Answer": answers }).to_string(),
            )))
            .unwrap()
    })
    .await;
    (server, records)
}

#[tokio::test]
async fn a_domain_is_proven_by_its_txt_record_and_is_then_the_tenants_alone() {
    let provider = provider().await;
    let (dns, records) = resolver().await;
    let app = spawn_app_with(|config| {
        config.public_url = PUBLIC_URL.into();
        config.secrets = Keyring::parse("k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
        config.doh_url = Some(format!("{}/dns-query", dns.base_url()));
    })
    .await;
    let owner = acme_with(&app, &provider).await;
    let globex = app.register("globex").await;
    let added = expect_status(
        app.post(
            "sso/domains",
            &owner.access_token,
            &json!({ "domain": "Forge.Example" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(added["domain"], "forge.example");
    assert_eq!(added["txt_name"], "_tollgate-verification.forge.example");
    assert_eq!(added["verified"], false);
    let nothing = json!({});
    let verify = || {
        app.post(
            "sso/domains/forge.example/verify",
            &owner.access_token,
            &nothing,
        )
    };

    // Not yet published, or published with another tenant's proof: not proven.
    expect_error(verify().await, StatusCode::CONFLICT, "domain_not_verified").await;
    records.lock().unwrap().push((
        "_tollgate-verification.forge.example".into(),
        "tollgate-verification=someone-elses-proof".into(),
    ));
    expect_error(verify().await, StatusCode::CONFLICT, "domain_not_verified").await;
    records.lock().unwrap().push((
        added["txt_name"].as_str().unwrap().into(),
        added["txt_value"].as_str().unwrap().into(),
    ));
    let proven = expect_status(verify().await, StatusCode::OK).await;

    assert_eq!(proven["verified"], true);
    assert_eq!(proven["verified_by"], "dns");
    let taken = app
        .post(
            "sso/domains",
            &globex.access_token,
            &json!({ "domain": "forge.example" }),
        )
        .await;
    expect_error(taken, StatusCode::CONFLICT, "domain_taken").await;
    provider
        .signs_in_as("p-new", "newcomer@forge.example")
        .await;
    let joined = sign_in(&app, "acme").await;
    assert_eq!(me(&app, &session_cookie(&joined)).await["role"], "member");
}

#[tokio::test]
async fn without_a_resolver_only_the_operator_can_vouch_for_a_domain() {
    let provider = provider().await;
    let app = app().await;
    let owner = acme_with(&app, &provider).await;
    let response = app
        .post(
            "sso/domains",
            &owner.access_token,
            &json!({ "domain": "forge.example" }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;

    let verify = app
        .post(
            "sso/domains/forge.example/verify",
            &owner.access_token,
            &json!({}),
        )
        .await;

    expect_error(verify, StatusCode::CONFLICT, "dns_verification_unavailable").await;
    approve_domain(&app, &owner, "forge.example").await;
    let listed = expect_status(
        app.get("sso/domains", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"][0]["verified_by"], "operator");
}
