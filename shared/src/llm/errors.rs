//! Errors on the OpenAI-compatible routes (`/v1/`) in OpenAI's shape,
//! `{"error":{"message","type","param","code"}}`, with the status that says what happened,
//! so the official SDKs raise their own exception classes (`BadRequestError`,
//! `AuthenticationError`, `NotFoundError`, `RateLimitError`, …).
//!
//! Handlers raise the same [`ApiError`] as everywhere else; only its rendering differs:
//! `type` follows from the status, `code` is Tollgate's code (OpenAI's name where one
//! exists), `param` names the offending request field, and headers (`Retry-After`,
//! `WWW-Authenticate`, the `RateLimit-*` set) are kept.

use http::StatusCode;
use serde_json::{Value as Json, json};

use crate::{
    ApiError,
    api::{Response, json_response},
    error::ErrorCause,
};

/// OpenAI's `error.type` for a status.
fn error_type(status: StatusCode, code: &str) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        404 => "invalid_request_error",
        429 if code == "quota_exceeded" => "insufficient_quota",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The `code` a client sees: OpenAI's name for what OpenAI also answers.
fn error_code(code: &'static str) -> &'static str {
    match code {
        "unauthorized" => "invalid_api_key",
        "rate_limited" => "rate_limit_exceeded",
        other => other,
    }
}

/// `error` as the `/v1/` routes answer it.
pub fn response(error: ApiError) -> Response {
    let param = error
        .details
        .get("param")
        .or_else(|| error.details.get("field"))
        .cloned()
        .unwrap_or(Json::Null);
    let body = json!({
        "error": {
            "message": error.message,
            "type": error_type(error.status, error.code),
            "param": param,
            "code": error_code(error.code),
        }
    });
    let mut response = json_response(error.status, &body);
    for (name, value) in &error.headers {
        response.headers_mut().append(name, value.clone());
    }
    if let Some(cause) = &error.cause {
        response.extensions_mut().insert(ErrorCause(cause.clone()));
    }
    response
}

/// A request OpenAI would refuse as malformed: 400 naming the parameter.
pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        .with_details(json!({ "param": param }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response) -> Json {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn an_unknown_model_is_a_404_invalid_request_error() {
        let error = ApiError::new(StatusCode::NOT_FOUND, "model_not_found", "no such model")
            .with_details(json!({ "param": "model" }));
        let response = response(error);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body(&response),
            json!({ "error": {
                "message": "no such model", "type": "invalid_request_error",
                "param": "model", "code": "model_not_found",
            }})
        );
    }

    #[test]
    fn a_bad_credential_keeps_its_challenge_and_speaks_openai() {
        let response = response(ApiError::unauthorized("send a key"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let body = body(&response);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(body["error"]["param"], Json::Null);
    }

    #[test]
    fn a_used_up_quota_is_insufficient_quota_and_a_rate_limit_a_rate_limit_error() {
        let quota = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", "used up")
            .with_header(http::header::RETRY_AFTER, 60);
        let response = response(quota);
        assert_eq!(response.headers()["retry-after"], "60");
        assert_eq!(body(&response)["error"]["type"], "insufficient_quota");
        let limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        let body = body(&super::response(limited));
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn a_validation_error_names_its_field_as_param() {
        let body = body(&response(ApiError::invalid_field("n", "must be 1 to 128")));
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
