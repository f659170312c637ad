//! Calls to Stripe's API through the `Outbound` port: form-encoded requests with the secret
//! key, an idempotency key on every create, and Stripe's errors turned into ours.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value as Json, json};

use crate::{ApiError, Env, error::ApiResult};

/// `application/x-www-form-urlencoded`, as Stripe's API takes it (`a[b][c]=v`).
pub fn form_encode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "billing_not_configured",
        "payments are not configured on this deployment",
    )
}

/// Sends one request to Stripe and returns its JSON; Stripe's refusals answer 502 with
/// Stripe's message, an unreachable Stripe 502 or 504.
pub async fn call(
    env: &Env,
    method: Method,
    path: &str,
    form: &[(&str, String)],
    idempotency_key: Option<&str>,
) -> ApiResult<Json> {
    let key = env
        .config
        .stripe_secret_key
        .as_deref()
        .ok_or_else(not_configured)?;
    let body = form_encode(form);
    let (uri, body) = if method == Method::GET {
        let query = if body.is_empty() {
            String::new()
        } else {
            format!("?{body}")
        };
        (
            format!("{}{path}{query}", env.config.stripe_api_base),
            Bytes::new(),
        )
    } else {
        (
            format!("{}{path}", env.config.stripe_api_base),
            Bytes::from(body),
        )
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let request = request
        .body(body)
        .map_err(|error| ApiError::internal().caused_by(format!("stripe request: {error}")))?;
    let response = env.outbound.send(request).await.map_err(|error| {
        let status = match error {
            crate::outbound::OutboundError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(
            status,
            "payment_provider_unreachable",
            "the payment provider did not answer",
        )
        .caused_by(error.to_string())
    })?;
    let status = response.status();
    let body: Json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
    if status.is_success() && !body.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "payment_provider_error",
            "the payment provider's answer could not be read",
        )
        .caused_by(format!(
            "Stripe answered {status} with a body that is not a JSON object ({} bytes)",
            response.body().len()
        )));
    }
    if !status.is_success() {
        let message = body
            .pointer("/error/message")
            .and_then(Json::as_str)
            .unwrap_or("the payment provider refused the request");
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, "payment_provider_error", message)
            .with_details(json!({ "provider_status": status.as_u16(), "provider_type": body.pointer("/error/type") })));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_encode_brackets_and_reserved_characters() {
        let form = form_encode(&[
            ("metadata[tenant_id]", "t 1".into()),
            ("success_url", "https://x.test/ok?a=1&b=2".into()),
        ]);
        assert_eq!(
            form,
            "metadata%5Btenant_id%5D=t%201&success_url=https%3A%2F%2Fx.test%2Fok%3Fa%3D1%26b%3D2"
        );
    }
}
