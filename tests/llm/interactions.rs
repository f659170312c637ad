//! `GET llm/interactions`: a member sees their own calls, owners and admins every call of
//! the tenant, with filters and paging.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status};

use tollgate_tests::openai_double::{Fault, OpenAiDouble};

use crate::support::{
    answered, chat, create_key, create_model, funded_tenant, hello, model_body, spawn_gateway,
};

const KEY: &str = "sk-interactions-0000001";

#[tokio::test]
async fn members_see_their_own_calls_and_admins_every_call_filtered_and_paged() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let double = OpenAiDouble::start(KEY).await;
    let key = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "main",
        &double.base_url(),
        KEY,
    )
    .await;
    let key = key["id"].as_str().unwrap();
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("chat", &[(key, "gpt-4o")]),
    )
    .await;
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("mini", &[(key, "gpt-4o-mini")]),
    )
    .await;
    let owner = funded_tenant(&app, &admin, "acme", 100_000).await;
    let member = app.add_user(&owner, "mia", "member").await;
    for (user, model) in [(&owner, "chat"), (&member, "chat"), (&member, "mini")] {
        answered(&app, &user.access_token, &hello(model)).await;
    }
    double.fails_with(Fault::ServerError);
    chat(&app, &member.access_token, &hello("mini")).await;

    let list = |token: &str, query: &str| {
        let (app, token, query) = (&app, token.to_owned(), query.to_owned());
        async move {
            expect_status(
                app.get(&format!("llm/interactions{query}"), &token).await,
                StatusCode::OK,
            )
            .await
        }
    };
    let all = list(&owner.access_token, "").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
    let own = list(&member.access_token, "").await;
    assert_eq!(own["data"].as_array().unwrap().len(), 3);
    assert!(
        own["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|call| call["user_id"] == member.user_id.as_str())
    );
    let minis = list(&owner.access_token, "?model=mini&status=succeeded").await;
    assert_eq!(minis["data"].as_array().unwrap().len(), 1);
    let by_user = list(&owner.access_token, &format!("?user_id={}", owner.user_id)).await;
    assert_eq!(by_user["data"].as_array().unwrap().len(), 1);
    let page = list(&owner.access_token, "?limit=3").await;
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_offset"], 3);
    let until_past = list(&owner.access_token, "?until=2000-01-01T00:00:00Z").await;
    assert!(until_past["data"].as_array().unwrap().is_empty());

    expect_error(
        app.get(
            &format!("llm/interactions?user_id={}", owner.user_id),
            &member.access_token,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in ["?status=done", "?since=yesterday", "?prompt=x"] {
        expect_error(
            app.get(&format!("llm/interactions{bad}"), &owner.access_token)
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        )
        .await;
    }
    let other = app.register("globex").await;
    let theirs = list(&other.access_token, "").await;
    assert_eq!(theirs["data"], json!([]));
}
