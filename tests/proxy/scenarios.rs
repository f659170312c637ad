//! What must hold behind any proxy with the shipped configuration; each proxy's module runs
//! every scenario through its own real proxy.

use serde_json::json;
use tollgate_tests::{PASSWORD, TestUser, expect_status};

use crate::support::{Reply, Stack};

/// Ways of writing a path under /comfy/ that nginx routes to /llm/ (or that some proxy
/// could), each of which Tollgate must refuse for a comfy key.
const CLIMBS_TO_LLM: &[&[u8]] = &[
    b"/comfy/../llm/v1/chat",
    b"/comfy/%2e%2e/llm/v1/chat",
    b"/comfy/%2E%2E/llm/v1/chat",
    b"/comfy/.%2e/llm/v1/chat",
    b"/comfy/..%2fllm/v1/chat",
    b"/comfy/%2e%2e%2fllm/v1/chat",
    b"/comfy%2f..%2fllm/v1/chat",
    b"/comfy/..%5cllm/v1/chat",
    b"/comfy/..\\llm/v1/chat",
    b"/comfy//../llm/v1/chat",
    b"/comfy/x%3F/../../llm/v1/chat",
    b"/comfy/x%23/../../llm/v1/chat",
    b"/comfy/x%00/../../llm/v1/chat",
    b"/comfy/%ff/../../llm/v1/chat",
    b"/comfy/%zz/../../llm/v1/chat",
    b"/comfy/../../llm/v1/chat",
    "/llm/é".as_bytes(),
];

/// Paths of the comfy key's own service, written in ways a proxy reads as /comfy/prompt.
const OWN_PATHS: &[&[u8]] = &[
    b"/comfy/prompt",
    b"/comfy/./history/../prompt",
    b"/%63omfy/prompt",
    b"/comfy/view?filename=a%2Fb.png&subfolder=..",
];

async fn api_key(stack: &Stack, owner: &TestUser, scopes: &[&str]) -> (String, String) {
    let key = stack.app.create_api_key(owner, scopes).await;
    (
        key["key"].as_str().unwrap().to_owned(),
        key["id"].as_str().unwrap().to_owned(),
    )
}

fn assert_status(reply: &Reply, status: u16, what: &str, stack: &Stack) {
    assert_eq!(
        reply.status,
        status,
        "{what}: {reply:?}\nproxy log:\n{}",
        stack.proxy.log()
    );
}

/// Credentials, scopes and identity headers: the gate's answers come back through the
/// proxy, and the services learn who is calling only from Tollgate.
pub async fn only_what_tollgate_allows_gets_through(stack: &Stack) {
    let owner = stack.app.register("proxied").await;
    let (key, key_id) = api_key(stack, &owner, &["comfy:read"]).await;
    let session = format!("Bearer {}", owner.access_token);

    let anonymous = stack.get(b"/comfy/history", &[]).await;
    assert_status(&anonymous, 401, "no credentials", stack);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|challenge| challenge.starts_with("Bearer")),
        "a 401 without a Bearer challenge: {anonymous:?}"
    );

    let signed_in = stack
        .get(b"/comfy/history", &[("Authorization", &session)])
        .await;
    assert_status(&signed_in, 200, "a session", stack);
    assert_eq!(
        signed_in.body,
        format!("comfyui /history tenant={} key=", owner.tenant_id)
    );

    let forged = stack
        .get(
            b"/comfy/history",
            &[("Authorization", "Bearer not.a.token")],
        )
        .await;
    assert_status(&forged, 401, "a forged token", stack);

    // A key scoped comfy:read may read ComfyUI, but neither submit work to it nor read
    // anything else.
    let read = stack.get(b"/comfy/history", &[("X-API-Key", &key)]).await;
    assert_status(&read, 200, "comfy:read reading ComfyUI", stack);
    assert_eq!(
        read.body,
        format!("comfyui /history tenant={} key={key_id}", owner.tenant_id)
    );
    let submit = stack
        .send(
            "POST",
            b"/comfy/prompt",
            &[("X-API-Key", &key)],
            Some(r#"{"prompt":{}}"#),
        )
        .await;
    assert_status(&submit, 403, "comfy:read submitting to ComfyUI", stack);
    let elsewhere = stack.get(b"/llm/v1/models", &[("X-API-Key", &key)]).await;
    assert_status(&elsewhere, 403, "comfy:read reading the LLM server", stack);

    // Identity headers the client writes itself never reach the service.
    let claimed = stack
        .get(
            b"/comfy/history",
            &[
                ("Authorization", &session),
                ("X-Tollgate-Tenant-Id", "someone-else"),
                ("X-Tollgate-Api-Key-Id", "key-of-someone-else"),
            ],
        )
        .await;
    assert_status(&claimed, 200, "a session claiming another identity", stack);
    assert_eq!(
        claimed.body,
        format!("comfyui /history tenant={} key=", owner.tenant_id)
    );
    assert!(
        stack.llm.requests().is_empty(),
        "{:?}",
        stack.llm.requests()
    );
}

/// A key scoped to /comfy/ reaches the LLM server by no encoding of the path and by no
/// header of its own, while the paths of its own service still work.
pub async fn a_scoped_key_reaches_no_other_service_by_any_encoding(stack: &Stack) {
    let owner = stack.app.register("proxied").await;
    let (writer, _) = api_key(stack, &owner, &["comfy:write"]).await;
    let (reader, _) = api_key(stack, &owner, &["comfy:read"]).await;

    for target in CLIMBS_TO_LLM {
        let reply = stack.get(target, &[("X-API-Key", &writer)]).await;
        // 403 from Tollgate; 400 from a proxy that refuses the request line itself, 404
        // from one that routes it nowhere.
        assert!(
            matches!(reply.status, 400 | 403 | 404),
            "{}: {reply:?}\nproxy log:\n{}",
            String::from_utf8_lossy(target),
            stack.proxy.log()
        );
    }
    assert!(
        stack.comfyui.requests().is_empty() && stack.llm.requests().is_empty(),
        "a refused request reached a service: comfyui {:?}, llm {:?}",
        stack.comfyui.requests(),
        stack.llm.requests()
    );

    for target in OWN_PATHS {
        let reply = stack
            .send("POST", target, &[("X-API-Key", &writer)], Some("{}"))
            .await;
        assert_status(&reply, 200, &String::from_utf8_lossy(target), stack);
        assert!(reply.body.starts_with("comfyui /"), "{reply:?}");
    }
    assert_eq!(stack.comfyui.requests().len(), OWN_PATHS.len());

    // The proxy names the request in X-Forwarded-*; a client that adds the X-Original-*
    // names (or the X-Forwarded-* ones) cannot make Tollgate check another request.
    let other_uri = stack
        .get(
            b"/llm/v1/models",
            &[
                ("X-API-Key", &reader),
                ("X-Forwarded-Uri", "/comfy/history"),
                ("X-Original-URI", "/comfy/history"),
            ],
        )
        .await;
    assert_status(&other_uri, 403, "a URI header of the client's own", stack);
    let other_method = stack
        .send(
            "POST",
            b"/comfy/prompt",
            &[
                ("X-API-Key", &reader),
                ("X-Forwarded-Method", "GET"),
                ("X-Original-Method", "GET"),
            ],
            Some("{}"),
        )
        .await;
    assert_status(
        &other_method,
        403,
        "a method header of the client's own",
        stack,
    );
    assert!(
        stack.llm.requests().is_empty(),
        "{:?}",
        stack.llm.requests()
    );
    assert_eq!(stack.comfyui.requests().len(), OWN_PATHS.len());
}

/// Tollgate (one trusted hop) counts login attempts by the address the proxy appended to
/// X-Forwarded-For and records that address, whatever the client wrote before it. The
/// stack's Tollgate allows 3 attempts a minute per address.
pub async fn a_forged_forwarded_for_does_not_escape_the_login_limit(stack: &Stack) {
    let owner = stack.app.register("proxied").await;
    let login = |password: &str, forged: &str| {
        let body = json!({ "tenant": "proxied", "email": owner.email, "password": password });
        let forged = forged.to_owned();
        async move {
            stack
                .send(
                    "POST",
                    b"/api/v1/auth/login",
                    &[("X-Forwarded-For", &forged)],
                    Some(&body.to_string()),
                )
                .await
        }
    };

    for forged in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let wrong = login("not the password at all", forged).await;
        assert_status(&wrong, 401, "a wrong password", stack);
    }
    let past_the_limit = login(PASSWORD, "198.51.100.4").await;

    assert_status(&past_the_limit, 429, "a login past the limit", stack);
    let failures = expect_status(
        stack
            .app
            .get("audit-logs?action=auth.login_failed", &owner.access_token)
            .await,
        reqwest::StatusCode::OK,
    )
    .await;
    let addresses: Vec<&str> = failures["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["ip"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["127.0.0.1"; 3]);
}
