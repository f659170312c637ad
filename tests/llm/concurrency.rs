//! The gateway's money invariants under concurrency: calls race for one pool, on the real
//! database through the real server.

use futures::future::join_all;
use reqwest::StatusCode;
use tollgate_tests::account_and_ledger;

use tollgate_tests::openai_double::{OpenAiDouble, Reported};

use crate::support::{
    create_model, funded_tenant, hello, interactions, model_body, platform_key, pool_spent,
    spawn_gateway, v1,
};

const KEY: &str = "sk-concurrency-00000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_against_a_pool_that_fits_one_hundred_answer_exactly_one_hundred()
 {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let provider = OpenAiDouble::start(KEY).await;
    let key = platform_key(&app, &admin, &provider, KEY).await;
    let model = model_body("chat", &[(key.as_str(), "gpt-4o")]);
    create_model(&app, "admin/llm/models", &admin, &model).await;
    // Each call holds its worst case, (8 + 8 + 4 + 6) prompt tokens at 2 and 100 completion
    // tokens at 8, and the provider reports exactly that: a call costs its hold.
    let per_call = (8 + 8 + 4 + 6) * 2 + 100 * 8;
    provider.reports(Reported {
        prompt_tokens: 8 + 8 + 4 + 6,
        completion_tokens: 100,
        cached_tokens: 0,
    });
    let owner = funded_tenant(&app, &admin, "acme", 100 * per_call).await;

    let calls = (0..200).map(|_| {
        app.client
            .post(v1(&app, "chat/completions"))
            .bearer_auth(&owner.access_token)
            .json(&hello("chat"))
            .send()
    });
    let statuses: Vec<StatusCode> = join_all(calls)
        .await
        .into_iter()
        .map(|response| response.unwrap().status())
        .collect();
    let answered = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!((answered, refused), (100, 100), "{statuses:?}");

    assert_eq!(provider.requests().len(), 100, "no refused call reached it");
    assert_eq!(
        pool_spent(&app, &owner.tenant_id).await,
        (100 * per_call, 0)
    );
    let (account, ledger) = account_and_ledger(&app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger, "the ledger sums to the balance");
    assert_eq!(account[0], account[1], "the pool is spent to exactly 0");
    let first = interactions(&app, &owner, "?limit=100").await;
    let rest = interactions(&app, &owner, "?limit=100&offset=100").await;
    assert_eq!((first.len(), rest.len()), (100, 0));
    assert!(
        first
            .iter()
            .all(|call| call["status"] == "succeeded" && call["cost"] == per_call)
    );
    let held = app
        .query(
            "SELECT COUNT(*) FROM credit_reservations WHERE status = 'held'",
            vec![],
        )
        .await;
    assert_eq!(held[0][0], 0, "every hold was settled");
}
