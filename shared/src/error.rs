//! The one error shape of the API:
//! `{"error":{"code":"quota_exceeded","message":"...","details":{...}}}`.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value as Json, json};

use crate::db::DbError;

/// An API error; boxed, so that `Result<T, ApiError>` stays small on the happy path.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(Box<ErrorParts>);

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Json,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside, for the operator's log; never sent to the client.
    pub cause: Option<String>,
}

/// Attached to a 5xx response's extensions so the adapter can log why it happened.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl std::ops::Deref for ApiError {
    type Target = ErrorParts;

    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorParts {
            status,
            code,
            message: message.into(),
            details: json!({}),
            headers: Vec::new(),
            cause: None,
        }))
    }

    pub fn with_details(mut self, details: Json) -> Self {
        self.0.details = details;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.0.headers.push((name, value));
        }
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A request whose JSON parsed but whose fields break a rule; `field` names the culprit.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
        .with_details(json!({ "field": field, "reason": message }))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            .with_header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"tollgate\"")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Also the answer for another tenant's row: existence never leaks across tenants.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
    }

    pub fn caused_by(mut self, cause: impl Into<String>) -> Self {
        self.0.cause = Some(cause.into());
        self
    }

    /// What the error is made of, for [`crate::api`] to answer it with.
    pub fn into_parts(self) -> ErrorParts {
        *self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

/// Seconds a client is told to wait when the database refuses Tollgate: an operator has to
/// act (a new token, a lifted quota), which takes longer than an overload.
const DATABASE_UNAVAILABLE_RETRY_AFTER: u32 = 30;

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Busy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the database is busy, retry shortly",
            )
            .with_header(http::header::RETRY_AFTER, 1),
            DbError::Unavailable {
                reason,
                first_report,
            } => {
                let error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable, retry later",
                )
                .with_header(http::header::RETRY_AFTER, DATABASE_UNAVAILABLE_RETRY_AFTER);
                // The operator's log hears the reason once; every request repeating it would
                // bury everything else while the refusal lasts.
                match first_report {
                    true => error.caused_by(reason),
                    false => error,
                }
            }
            // A range trigger refused a figure the statement computed (the schema names these
            // `out_of_range: …`): the request asked for more than the system can hold.
            DbError::Constraint(message) if message.contains("out_of_range") => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_out_of_range",
                message
                    .split_once("out_of_range: ")
                    .map_or("the amount is out of range", |(_, reason)| reason)
                    .to_owned(),
            ),
            _ => ApiError::internal().caused_by(error.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
