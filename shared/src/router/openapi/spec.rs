//! The OpenAPI 3.1 document, built from one table of the router's operations. Request
//! bodies take their schemas from the handlers' own serde types (`utoipa::ToSchema`
//! derives); responses are built as JSON by the handlers, so their schemas are written here
//! and checked against real answers by the test suite.

use serde_json::{Map, Value as Json, json};
use utoipa::{
    ToSchema,
    openapi::{RefOr, schema::Schema},
};

use crate::{
    auth::{api_keys, recovery, sessions, sso},
    billing::checkout,
    credits::{accounts, grants, reservations},
    jobs::{bots, http as jobs_http, queue, runners, workers},
    llm::{keys as llm_keys, models as llm_models, policy as llm_policy},
    quota::{http as quota_http, plan_limits},
    tenancy::{admin, invitations, plans, tenants, users},
    webhooks::endpoints,
};

/// Who may call an operation, and so its `security` and the errors that come with it.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Anyone,
    /// An access token or an API key of a tenant's user (its role and scopes decide).
    Member,
    /// Optional credentials: `auth/logout` takes the refresh token in the body instead.
    MemberOrNone,
    PlatformAdmin,
    Runner,
    CronSecret,
    Stripe,
}

struct Operation {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    access: Access,
    body: Option<(Json, bool)>,
    parameters: Vec<Json>,
    /// Status, description, media type and schema of each success.
    successes: Vec<(u16, &'static str, &'static str, Option<Json>)>,
    errors: Vec<u16>,
}

fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        tag,
        summary,
        description: None,
        access: Access::Member,
        body: None,
        parameters: Vec::new(),
        successes: Vec::new(),
        errors: Vec::new(),
    }
}

/// Collects the named schemas the request bodies refer to.
#[derive(Default)]
struct Schemas(Vec<(String, RefOr<Schema>)>);

impl Schemas {
    fn of<T: ToSchema>(&mut self) -> Json {
        T::schemas(&mut self.0);
        serde_json::to_value(T::schema()).expect("schemas serialize")
    }
}

impl Operation {
    fn describe(mut self, text: &'static str) -> Self {
        self.description = Some(text);
        self
    }

    fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    fn body(mut self, schema: Json) -> Self {
        self.body = Some((schema, true));
        self
    }

    /// A body that may be left out altogether.
    fn optional_body(mut self, schema: Json) -> Self {
        self.body = Some((schema, false));
        self
    }

    fn query(mut self, name: &str, schema: Json, description: &str) -> Self {
        self.parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": schema,
        }));
        self
    }

    fn header(mut self, name: &str, description: &str) -> Self {
        self.parameters.push(json!({
            "name": name, "in": "header", "required": false,
            "description": description, "schema": { "type": "string" },
        }));
        self
    }

    /// `?limit=&offset=`; a wrong value answers 400.
    fn paged(self) -> Self {
        self.query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 100, "default": 50 }),
            "items per page",
        )
        .query(
            "offset",
            json!({ "type": "integer", "minimum": 0, "default": 0 }),
            "items to skip; `next_offset` of the previous page",
        )
        .errors(&[400])
    }

    fn idempotent(self) -> Self {
        self.header(
            "Idempotency-Key",
            "1 to 200 characters; a retry with the same key answers the first result",
        )
        .errors(&[400, 409])
    }

    fn answers(mut self, status: u16, description: &'static str, schema: Json) -> Self {
        self.successes
            .push((status, description, "application/json", Some(schema)));
        self
    }

    fn html(mut self) -> Self {
        let page = json!({ "type": "string" });
        self.successes.push((200, "OK", "text/html", Some(page)));
        self
    }

    fn ok(self, schema: Json) -> Self {
        self.answers(200, "OK", schema)
    }

    fn created(self, schema: Json) -> Self {
        self.answers(201, "Created", schema)
    }

    fn no_content(mut self) -> Self {
        self.successes.push((204, "No Content", "", None));
        self
    }

    /// 302 to `Location`, no body.
    fn found(mut self, description: &'static str) -> Self {
        self.successes.push((302, description, "", None));
        self
    }

    fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// Every status the operation can answer with the error shape: what its access, body
    /// and path imply, and what its handler adds.
    fn error_statuses(&self) -> Vec<u16> {
        // Any request may be too large, and any database call may find the database busy.
        let mut statuses = vec![413, 503];
        statuses.extend(&self.errors);
        if self.body.is_some() {
            statuses.extend([400, 415, 422]);
        }
        if self.path.contains('{') {
            statuses.push(404);
        }
        match self.access {
            Access::Member => statuses.extend([401, 403, 429]),
            Access::MemberOrNone => statuses.extend([401, 403]),
            Access::PlatformAdmin => statuses.extend([401, 403]),
            Access::Runner | Access::CronSecret => statuses.push(401),
            Access::Stripe => statuses.extend([400, 404]),
            Access::Anyone => {}
        }
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    fn to_json(&self) -> Json {
        let mut parameters: Vec<Json> = self
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({
                    "name": name, "in": "path", "required": true,
                    "schema": { "type": "string" },
                })
            })
            .collect();
        parameters.extend(self.parameters.iter().cloned());
        let mut responses = Map::new();
        for (status, description, media_type, schema) in &self.successes {
            let mut response = json!({ "description": description });
            if let Some(schema) = schema {
                response["content"] = json!({ *media_type: { "schema": schema } });
            }
            if self.access == Access::Member {
                response["headers"] = json!({
                    "RateLimit-Limit": { "$ref": "#/components/headers/RateLimit-Limit" },
                    "RateLimit-Remaining": { "$ref": "#/components/headers/RateLimit-Remaining" },
                    "RateLimit-Reset": { "$ref": "#/components/headers/RateLimit-Reset" },
                });
            }
            responses.insert(status.to_string(), response);
        }
        for status in self.error_statuses() {
            responses.insert(
                status.to_string(),
                json!({ "$ref": format!("#/components/responses/{}", error_name(status)) }),
            );
        }
        let mut operation = json!({
            "operationId": operation_id(self.method, self.path),
            "tags": [self.tag],
            "summary": self.summary,
            "security": security(self.access),
            "responses": responses,
        });
        if let Some(description) = self.description {
            operation["description"] = json!(description);
        }
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        if let Some((schema, required)) = &self.body {
            operation["requestBody"] = json!({
                "required": required,
                "content": { "application/json": { "schema": schema } },
            });
        }
        operation
    }
}

fn security(access: Access) -> Json {
    match access {
        Access::Anyone => json!([]),
        Access::Member => json!([{ "bearer": [] }, { "apiKey": [] }]),
        Access::MemberOrNone => json!([{}, { "bearer": [] }]),
        Access::PlatformAdmin => json!([{ "bearer": [] }]),
        Access::Runner => json!([{ "runnerToken": [] }]),
        Access::CronSecret => json!([{ "cronSecret": [] }]),
        Access::Stripe => json!([{ "stripeSignature": [] }]),
    }
}

/// `POST /users/{id}/role` → `post_users_id_role`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            segment
                .trim_matches(|c| c == '{' || c == '}')
                .replace(['-', '.'], "_")
        })
        .collect();
    format!("{}_{}", method, words.join("_"))
}

const ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "The body is not JSON (`invalid_json`), a query parameter or header is malformed (`invalid_query`, `invalid_idempotency_key`), or a signature or event is invalid",
    ),
    (
        401,
        "Unauthorized",
        "No valid credential (`unauthorized`, `invalid_credentials`, `invalid_token`); answers carry `WWW-Authenticate`",
    ),
    (
        402,
        "PaymentRequired",
        "Not enough credits (`insufficient_credits`); `details` says what remains",
    ),
    (
        403,
        "Forbidden",
        "The role, scopes, tenant status or plan do not allow it (`forbidden`, `insufficient_scope`, `tenant_suspended`, `plan_limit_reached`, `plan_limit_exceeded`)",
    ),
    (
        404,
        "NotFound",
        "No such resource in the caller's tenant (`not_found`); another tenant's rows are never seen",
    ),
    (
        409,
        "Conflict",
        "The request conflicts with the current state (`conflict`, `email_taken`, `slug_taken`, `lease_lost`, …)",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body exceeds `TOLLGATE_MAX_BODY_BYTES` (`payload_too_large`)",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The body is not sent as `application/json` (or `application/*+json`) (`unsupported_media_type`)",
    ),
    (
        422,
        "UnprocessableEntity",
        "The JSON is well-formed but breaks a rule (`validation_failed`, `plan_limit_exceeded`); `details.field` names the culprit",
    ),
    (
        429,
        "TooManyRequests",
        "A rate limit, attempt limit or usage quota is reached (`rate_limited`, `too_many_attempts`, `quota_exceeded`); see `Retry-After`",
    ),
    (
        502,
        "BadGateway",
        "The payment provider failed (`payment_provider_error`)",
    ),
    (
        503,
        "ServiceUnavailable",
        "The database is busy (`busy`) or a needed service is not configured (`billing_not_configured`); see `Retry-After`",
    ),
    (
        504,
        "GatewayTimeout",
        "The payment provider did not answer in time",
    ),
];

fn error_name(status: u16) -> &'static str {
    ERRORS
        .iter()
        .find(|(code, ..)| *code == status)
        .map(|(_, name, _)| *name)
        .expect("every documented error status has a component")
}

fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn page_of(item: &str) -> Json {
    json!({
        "type": "object",
        "required": ["data", "has_more", "next_offset"],
        "properties": {
            "data": { "type": "array", "items": reference(item) },
            "has_more": { "type": "boolean" },
            "next_offset": { "type": ["integer", "null"] },
        },
    })
}

fn list_of(item: &str) -> Json {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": { "data": { "type": "array", "items": reference(item) } },
    })
}

fn string() -> Json {
    json!({ "type": "string" })
}

fn optional_string() -> Json {
    json!({ "type": ["string", "null"] })
}

fn time() -> Json {
    json!({ "type": "string", "format": "date-time" })
}

fn optional_time() -> Json {
    json!({ "type": ["string", "null"], "format": "date-time" })
}

fn integer() -> Json {
    json!({ "type": "integer" })
}

fn optional_integer() -> Json {
    json!({ "type": ["integer", "null"] })
}

fn boolean() -> Json {
    json!({ "type": "boolean" })
}

/// An object whose listed properties are all present.
fn object(properties: &[(&str, Json)]) -> Json {
    let names: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Json> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({ "type": "object", "required": names, "properties": properties })
}

/// `base` with more properties, all present.
fn extend(base: &str, properties: &[(&str, Json)]) -> Json {
    json!({ "allOf": [reference(base), object(properties)] })
}

fn enumeration(values: &[&str]) -> Json {
    json!({ "type": "string", "enum": values })
}

fn response_schemas() -> Map<String, Json> {
    let role = || enumeration(&["owner", "admin", "member", "viewer"]);
    let mut schemas = Map::new();
    let mut add = |name: &str, schema: Json| {
        schemas.insert(name.to_owned(), schema);
    };
    add(
        "Error",
        json!({
            "type": "object",
            "required": ["error"],
            "additionalProperties": false,
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "additionalProperties": false,
                "properties": {
                    "code": { "type": "string", "description": "stable, machine-readable" },
                    "message": { "type": "string", "description": "for people" },
                    "details": { "type": "object", "description": "what the code needs said: the field, the limit, …" },
                },
            } },
        }),
    );
    add(
        "TokenPair",
        object(&[
            ("token_type", enumeration(&["Bearer"])),
            ("access_token", string()),
            ("expires_in", integer()),
            ("refresh_token", string()),
            ("refresh_expires_in", integer()),
        ]),
    );
    let new_user = || {
        object(&[
            ("id", string()),
            ("email", string()),
            ("name", string()),
            ("role", role()),
        ])
    };
    add(
        "Registration",
        extend(
            "TokenPair",
            &[
                (
                    "tenant",
                    object(&[
                        ("id", string()),
                        ("slug", string()),
                        ("name", string()),
                        ("plan", string()),
                    ]),
                ),
                ("user", new_user()),
            ],
        ),
    );
    add(
        "Login",
        extend(
            "TokenPair",
            &[("user_id", string()), ("tenant_id", string())],
        ),
    );
    add(
        "AcceptedInvitation",
        extend(
            "TokenPair",
            &[
                ("user", new_user()),
                ("tenant", object(&[("id", string()), ("slug", string())])),
            ],
        ),
    );
    add(
        "AdminToken",
        object(&[
            ("token_type", enumeration(&["Bearer"])),
            ("access_token", string()),
            ("expires_in", integer()),
        ]),
    );
    add("Status", object(&[("status", string())]));
    add(
        "User",
        object(&[
            ("id", string()),
            ("email", string()),
            ("name", string()),
            ("role", role()),
            ("status", string()),
            ("email_verified", boolean()),
            ("last_login_at", optional_time()),
            ("created_at", time()),
        ]),
    );
    add(
        "Tenant",
        object(&[
            ("id", string()),
            ("slug", string()),
            ("name", string()),
            ("plan", string()),
            ("custom_domain", optional_string()),
            ("status", enumeration(&["active", "suspended", "deleted"])),
            (
                "branding",
                object(&[
                    ("display_name", optional_string()),
                    ("logo_url", optional_string()),
                    ("accent_color", optional_string()),
                ]),
            ),
            ("created_at", time()),
            ("updated_at", time()),
        ]),
    );
    add(
        "TenantWithLimits",
        extend("Tenant", &[("plan_limits", reference("PlanLimits"))]),
    );
    add("AdminTenant", extend("Tenant", &[("users", integer())]));
    let mut limits = vec![
        ("requests_per_minute", integer()),
        ("max_users", integer()),
        ("max_api_keys", integer()),
        ("monthly_credits", integer()),
        ("priority", integer()),
        ("audit_retention_days", integer()),
        (
            "allowed_models",
            json!({ "type": ["array", "null"], "items": { "type": "string" } }),
        ),
    ];
    for nullable in plans::NULLABLE_LIMITS {
        if nullable != "allowed_models" {
            limits.push((nullable, optional_integer()));
        }
    }
    add("PlanLimits", object(&limits));
    add(
        "Plan",
        object(&[
            ("code", string()),
            ("name", string()),
            ("overridden", boolean()),
            ("limits", reference("PlanLimits")),
        ]),
    );
    add(
        "Me",
        object(&[
            ("user", reference("User")),
            ("tenant", reference("Tenant")),
            ("role", role()),
            (
                "scopes",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
            ("auth", enumeration(&["session", "api_key"])),
            ("api_key_id", optional_string()),
        ]),
    );
    add(
        "ForwardAuth",
        object(&[
            ("tenant_id", string()),
            ("tenant", string()),
            ("user_id", string()),
            ("role", role()),
            (
                "scopes",
                json!({ "type": "string", "description": "space-separated" }),
            ),
            ("auth", enumeration(&["session", "api_key"])),
        ]),
    );
    add(
        "Invitation",
        object(&[
            ("id", string()),
            ("email", string()),
            ("role", role()),
            (
                "status",
                enumeration(&["pending", "accepted", "revoked", "expired"]),
            ),
            ("expires_at", time()),
            ("created_at", time()),
        ]),
    );
    let scopes = || json!({ "type": "array", "items": { "type": "string" } });
    add(
        "ApiKey",
        object(&[
            ("id", string()),
            ("name", string()),
            ("prefix", string()),
            ("user_id", string()),
            ("scopes", scopes()),
            ("expires_at", optional_time()),
            ("last_used_at", optional_time()),
            ("revoked_at", optional_time()),
            ("created_at", time()),
        ]),
    );
    add(
        "NewApiKey",
        object(&[
            ("id", string()),
            ("name", string()),
            ("prefix", string()),
            (
                "key",
                json!({ "type": "string", "description": "the secret `tg_…`, shown once" }),
            ),
            ("user_id", string()),
            ("scopes", scopes()),
            ("expires_at", optional_time()),
            ("created_at", time()),
        ]),
    );
    add(
        "CreditAccount",
        object(&[
            ("id", string()),
            ("kind", enumeration(&["pool", "user"])),
            ("total", optional_integer()),
            ("used", integer()),
            ("reserved", integer()),
            ("remaining", optional_integer()),
            ("blocked", boolean()),
            (
                "alert_thresholds",
                json!({ "type": "array", "items": { "type": "integer" } }),
            ),
            (
                "auto_topup",
                object(&[
                    ("enabled", boolean()),
                    ("threshold", integer()),
                    ("amount", integer()),
                    ("max_per_month", integer()),
                ]),
            ),
        ]),
    );
    add(
        "Balances",
        object(&[
            ("pool", reference("CreditAccount")),
            ("user", reference("CreditAccount")),
        ]),
    );
    add(
        "CreditMovement",
        object(&[
            (
                "applied",
                json!({ "type": "boolean", "description": "false when the idempotency key had been used" }),
            ),
            ("account", reference("CreditAccount")),
        ]),
    );
    add(
        "LedgerEntry",
        object(&[
            ("id", string()),
            ("account_id", string()),
            ("kind", string()),
            ("amount", integer()),
            ("total_delta", integer()),
            ("used_delta", integer()),
            ("reserved_delta", integer()),
            ("reason", optional_string()),
            ("actor_id", optional_string()),
            ("reservation_id", optional_string()),
            ("model", optional_string()),
            ("job_id", optional_string()),
            ("idempotency_key", string()),
            ("created_at", time()),
        ]),
    );
    add(
        "CreditAlert",
        object(&[
            ("account_id", string()),
            ("threshold", integer()),
            ("period", string()),
            ("created_at", time()),
            ("resolved_at", optional_time()),
        ]),
    );
    add(
        "Reservation",
        object(&[
            ("id", string()),
            ("user_id", string()),
            ("amount", integer()),
            ("status", string()),
            ("actual", optional_integer()),
            ("charged", optional_integer()),
            ("reason", optional_string()),
            ("model", optional_string()),
            ("job_id", optional_string()),
            ("idempotency_key", string()),
            ("created_at", time()),
            ("finished_at", optional_time()),
            ("refunded_at", optional_time()),
        ]),
    );
    let metric = || enumeration(&["jobs", "gpu_seconds", "llm_tokens"]);
    let period = || enumeration(&["day", "month"]);
    let scope = || enumeration(&["user", "tenant"]);
    add(
        "Counter",
        object(&[
            ("scope", scope()),
            ("metric", metric()),
            ("period", period()),
            ("used", integer()),
            ("limit", optional_integer()),
            ("remaining", optional_integer()),
            ("resets_at", time()),
        ]),
    );
    add(
        "UsageRecorded",
        json!({
            "type": "object",
            "required": ["metric", "amount"],
            "properties": {
                "metric": metric(),
                "amount": integer(),
                "recorded_at": time(),
                "counters": { "type": "array", "items": reference("Counter") },
                "replayed": { "type": "boolean", "description": "present (true) when the Idempotency-Key had been used: nothing was counted again" },
            },
        }),
    );
    let figures = || {
        object(&[
            ("used", integer()),
            ("limit", optional_integer()),
            ("limit_source", optional_string()),
            ("remaining", optional_integer()),
            (
                "limited_by",
                json!({ "type": ["string", "null"], "enum": ["user", "tenant", null] }),
            ),
            ("percent_used", json!({ "type": ["number", "null"] })),
            ("resets_at", time()),
        ])
    };
    add(
        "MetricUsage",
        object(&[
            ("day", figures()),
            ("month", figures()),
            (
                "daily_history",
                json!({ "type": "array", "items": object(&[("date", string()), ("used", integer())]) }),
            ),
            ("daily_average", json!({ "type": "number" })),
            ("projected_month_end", integer()),
            ("projected_to_exceed", boolean()),
            ("last_activity_at", optional_time()),
        ]),
    );
    add(
        "ModelUsage",
        object(&[
            ("model", string()),
            ("calls", integer()),
            ("prompt_tokens", integer()),
            ("completion_tokens", integer()),
            ("cached_tokens", integer()),
            ("cost", integer()),
        ]),
    );
    add(
        "UsageReport",
        json!({
            "type": "object",
            "required": ["scope", "tenant_id", "user_id", "as_of", "day", "month", "last_activity_at", "metrics", "llm_by_model"],
            "properties": {
                "scope": scope(),
                "tenant_id": string(),
                "user_id": optional_string(),
                "as_of": time(),
                "day": object(&[("start", time()), ("resets_at", time())]),
                "month": object(&[
                    ("start", time()),
                    ("resets_at", time()),
                    ("days_in_month", integer()),
                    ("days_elapsed", integer()),
                ]),
                "last_activity_at": optional_time(),
                "metrics": { "type": "object", "additionalProperties": reference("MetricUsage") },
                "llm_by_model": object(&[
                    ("day", json!({ "type": "array", "items": reference("ModelUsage") })),
                    ("month", json!({ "type": "array", "items": reference("ModelUsage") })),
                ]),
                "by_user": {
                    "type": "array",
                    "description": "with `scope=tenant` only",
                    "items": object(&[
                        ("user_id", string()),
                        ("email", optional_string()),
                        ("name", optional_string()),
                        ("month", json!({ "type": "object", "additionalProperties": integer() })),
                        ("last_activity_at", optional_time()),
                    ]),
                },
            },
        }),
    );
    add(
        "QuotaLimits",
        object(&[
            ("tenant_id", string()),
            ("user_id", optional_string()),
            (
                "limits",
                json!({ "type": "array", "items": object(&[
                    ("metric", metric()),
                    ("period", period()),
                    ("override", optional_integer()),
                    ("limit", optional_integer()),
                    ("source", optional_string()),
                ]) }),
            ),
        ]),
    );
    add(
        "PlanCheck",
        object(&[
            ("allowed", boolean()),
            ("plan", string()),
            ("limits", json!({ "type": "object" })),
        ]),
    );
    add(
        "Job",
        object(&[
            ("id", string()),
            (
                "status",
                enumeration(&["queued", "running", "succeeded", "failed", "cancelled"]),
            ),
            ("worker_id", string()),
            ("bot_id", optional_string()),
            ("user_id", string()),
            ("priority", integer()),
            ("progress", integer()),
            ("current_node", optional_string()),
            ("estimated_cost", integer()),
            ("estimated_vram_mb", integer()),
            ("reservation_id", string()),
            ("time_limit_seconds", integer()),
            ("attempts", integer()),
            ("max_attempts", integer()),
            ("cancel_requested", boolean()),
            (
                "outputs",
                json!({ "type": "array", "description": "what the runner stored; with an output bucket, each carries a presigned `url` and `url_expires_at`" }),
            ),
            ("error", optional_string()),
            ("gpu_seconds", optional_integer()),
            ("peak_vram_mb", optional_integer()),
            ("created_at", time()),
            ("available_at", time()),
            ("started_at", optional_time()),
            ("finished_at", optional_time()),
            ("lease_expires_at", optional_time()),
        ]),
    );
    add(
        "Worker",
        object(&[
            ("id", string()),
            ("name", string()),
            ("shared", boolean()),
            ("default", boolean()),
            ("gpu_type", optional_string()),
            ("min_vram_mb", integer()),
            ("max_concurrency", optional_integer()),
            ("created_at", time()),
            ("updated_at", time()),
        ]),
    );
    add(
        "SsoProvider",
        object(&[
            ("id", string()),
            ("name", string()),
            ("kind", enumeration(&["oidc", "google", "microsoft"])),
            ("issuer", string()),
            ("client_id", string()),
            ("scopes", json!({ "type": "array", "items": string() })),
            ("start_url", string()),
            ("created_at", time()),
        ]),
    );
    add(
        "SsoSettings",
        object(&[
            ("required", boolean()),
            ("default_role", enumeration(&["admin", "member", "viewer"])),
        ]),
    );
    add(
        "SsoDomain",
        object(&[
            ("domain", string()),
            ("verified", boolean()),
            ("verified_at", optional_time()),
            ("verified_by", optional_string()),
            ("txt_name", string()),
            ("txt_value", string()),
        ]),
    );
    add(
        "WorkerWithActivity",
        extend(
            "Worker",
            &[(
                "activity",
                object(&[
                    ("queued", integer()),
                    ("running", integer()),
                    ("runners_online", integer()),
                    ("jobs_this_month", integer()),
                    ("gpu_seconds_this_month", integer()),
                ]),
            )],
        ),
    );
    add(
        "WorkerWithRunners",
        extend(
            "Worker",
            &[(
                "runners",
                json!({ "type": "array", "items": object(&[
                    ("id", string()),
                    ("host", string()),
                    ("gpu", optional_string()),
                    ("vram_mb", optional_integer()),
                    ("version", optional_string()),
                    ("registered_at", time()),
                    ("last_seen_at", time()),
                    ("health", enumeration(&["online", "stale"])),
                ]) }),
            )],
        ),
    );
    add(
        "RunnerToken",
        object(&[
            ("id", string()),
            ("name", string()),
            ("created_at", time()),
            ("revoked_at", optional_time()),
        ]),
    );
    add(
        "NewRunnerToken",
        object(&[
            ("id", string()),
            ("worker_id", string()),
            ("name", string()),
            (
                "token",
                json!({ "type": "string", "description": "the secret `tgr_…`, shown once" }),
            ),
            ("created_at", time()),
        ]),
    );
    add(
        "Bot",
        object(&[
            ("id", string()),
            ("worker_id", string()),
            ("name", string()),
            (
                "workflow",
                json!({ "description": "the saved ComfyUI workflow" }),
            ),
            ("created_at", time()),
            ("updated_at", time()),
        ]),
    );
    add(
        "RunnerSeen",
        object(&[
            ("runner_id", string()),
            ("worker_id", string()),
            ("last_seen_at", time()),
        ]),
    );
    add(
        "ClaimedJob",
        object(&[
            ("job_id", string()),
            ("lease_id", string()),
            ("lease_expires_at", time()),
            ("attempt", integer()),
            ("time_limit_seconds", integer()),
            (
                "workflow",
                json!({ "description": "the ComfyUI workflow to run" }),
            ),
        ]),
    );
    add(
        "Lease",
        object(&[
            ("lease_expires_at", time()),
            ("cancel_requested", boolean()),
        ]),
    );
    add(
        "WebhookEndpoint",
        object(&[
            ("id", string()),
            ("url", string()),
            ("description", string()),
            (
                "event_types",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
            ("enabled", boolean()),
            ("disabled_reason", optional_string()),
            ("disabled_at", optional_time()),
            ("previous_secret_expires_at", optional_time()),
            ("created_at", time()),
            ("updated_at", time()),
        ]),
    );
    add(
        "WebhookEndpointWithSecret",
        extend(
            "WebhookEndpoint",
            &[(
                "secret",
                json!({ "type": "string", "description": "`whsec_…`, shown at creation and rotation only" }),
            )],
        ),
    );
    add(
        "WebhookDelivery",
        object(&[
            ("id", string()),
            ("endpoint_id", string()),
            ("message_id", string()),
            ("event_type", string()),
            ("status", enumeration(&["pending", "succeeded", "failed"])),
            ("attempt_count", integer()),
            ("next_attempt_at", optional_time()),
            ("last_status_code", optional_integer()),
            ("last_error", optional_string()),
            ("succeeded_at", optional_time()),
            ("created_at", time()),
            (
                "payload",
                json!({ "description": "the message body as sent" }),
            ),
            (
                "attempts",
                json!({ "type": "array", "items": object(&[
                    ("attempt", integer()),
                    ("source", string()),
                    ("status_code", optional_integer()),
                    ("error", optional_string()),
                    ("error_message", optional_string()),
                    ("response_excerpt", optional_string()),
                    ("attempted_at", time()),
                ]) }),
            ),
        ]),
    );
    add(
        "EventTypes",
        object(&[
            (
                "data",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
            (
                "wildcards",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
            ("test_event", string()),
        ]),
    );
    add(
        "AuditEntry",
        object(&[
            ("id", string()),
            ("sequence", integer()),
            ("action", string()),
            (
                "actor",
                object(&[
                    (
                        "type",
                        enumeration(&["user", "api_key", "platform_admin", "system", "anonymous"]),
                    ),
                    ("id", optional_string()),
                    ("user_id", optional_string()),
                ]),
            ),
            (
                "target",
                json!({ "oneOf": [
                    { "type": "null" },
                    object(&[("type", string()), ("id", optional_string())]),
                ] }),
            ),
            ("ip", optional_string()),
            ("user_agent", optional_string()),
            (
                "metadata",
                json!({ "description": "what the action recorded" }),
            ),
            ("created_at", time()),
            ("previous_hash", optional_string()),
            (
                "hash",
                json!({ "type": ["string", "null"], "description": "null until the entry is sealed into the chain" }),
            ),
        ]),
    );
    let link = || object(&[("sequence", integer()), ("hash", optional_string())]);
    add(
        "AuditVerification",
        object(&[
            ("valid", boolean()),
            ("entries_checked", integer()),
            ("entries_unsealed", integer()),
            (
                "first_broken",
                json!({ "oneOf": [
                    { "type": "null" },
                    object(&[
                        ("sequence", integer()),
                        ("reason", string()),
                        ("id", optional_string()),
                        ("action", optional_string()),
                        ("created_at", optional_time()),
                        ("stored_hash", optional_string()),
                    ]),
                ] }),
            ),
            ("checkpoint", link()),
            ("head", link()),
        ]),
    );
    add(
        "Report",
        json!({
            "type": "object",
            "required": ["id", "kind", "period", "period_start", "period_end", "created_at", "usage", "credits"],
            "properties": {
                "id": string(),
                "kind": enumeration(&["daily", "monthly"]),
                "period": string(),
                "period_start": time(),
                "period_end": time(),
                "created_at": time(),
                "usage": { "type": "object", "description": "jobs, GPU seconds and LLM tokens of the tenant" },
                "credits": { "type": "object", "description": "the pool's credits: added, removed, used, balance at the end" },
                "llm_by_model": {
                    "type": "array",
                    "description": "the LLM calls by model; in `GET reports/{id}` only",
                    "items": reference("ModelUsage"),
                },
                "users": { "type": "array", "description": "per-user lines; in `GET reports/{id}` only" },
            },
        }),
    );
    add(
        "Mail",
        object(&[
            ("id", string()),
            ("tenant_id", optional_string()),
            ("recipient", string()),
            ("template", string()),
            ("status", enumeration(&["pending", "sent", "failed"])),
            ("attempts", integer()),
            ("next_attempt_at", optional_time()),
            ("last_attempt_at", optional_time()),
            ("last_error", optional_string()),
            ("provider_message_id", optional_string()),
            ("sent_at", optional_time()),
            ("failed_at", optional_time()),
            ("created_at", time()),
        ]),
    );
    add(
        "PlatformAuditEntry",
        object(&[
            ("id", string()),
            ("action", string()),
            (
                "actor",
                object(&[("type", enumeration(&["platform_admin"])), ("id", string())]),
            ),
            (
                "target",
                json!({ "oneOf": [
                    { "type": "null" },
                    object(&[("type", string()), ("id", optional_string())]),
                ] }),
            ),
            ("ip", optional_string()),
            ("user_agent", optional_string()),
            ("metadata", json!({ "description": "what changed" })),
            ("created_at", time()),
        ]),
    );
    let owner = || enumeration(&["platform", "tenant"]);
    add(
        "LlmProviderKey",
        object(&[
            ("id", string()),
            ("owner", owner()),
            ("name", string()),
            ("kind", enumeration(&["openai", "anthropic"])),
            (
                "base_url",
                json!({ "type": ["string", "null"], "description": "null on the platform's keys as a tenant lists them" }),
            ),
            (
                "api_key_last4",
                json!({ "type": ["string", "null"], "description": "the key's last four characters (empty for a key shorter than eight); the key itself is never returned" }),
            ),
            ("created_at", time()),
        ]),
    );
    add(
        "LlmModel",
        object(&[
            ("id", string()),
            ("owner", owner()),
            ("name", string()),
            (
                "aliases",
                json!({ "type": "array", "items": { "type": "string" } }),
            ),
            (
                "deployments",
                json!({ "type": "array", "items": object(&[("provider_key_id", string()), ("model", string())]) }),
            ),
            ("context_window", integer()),
            ("max_output_tokens", integer()),
            ("input_price", integer()),
            ("output_price", integer()),
            ("cached_input_price", integer()),
            (
                "plans",
                json!({ "type": ["array", "null"], "items": { "type": "string" } }),
            ),
            ("created_at", time()),
        ]),
    );
    add(
        "LlmInteraction",
        object(&[
            ("id", string()),
            ("user_id", string()),
            ("api_key_id", optional_string()),
            ("endpoint", enumeration(&["chat", "embeddings"])),
            ("model", string()),
            ("requested_model", string()),
            ("provider_key_id", optional_string()),
            ("deployment_model", optional_string()),
            ("attempts", integer()),
            ("prompt_tokens", integer()),
            ("completion_tokens", integer()),
            ("cached_tokens", integer()),
            ("cost", integer()),
            ("reservation_id", optional_string()),
            ("latency_ms", integer()),
            ("first_token_ms", optional_integer()),
            ("status", enumeration(&["succeeded", "failed"])),
            ("error", optional_string()),
            ("created_at", time()),
        ]),
    );
    add(
        "LlmInteractionWithContent",
        json!({
            "allOf": [
                reference("LlmInteraction"),
                object(&[(
                    "content",
                    json!({
                        "type": ["object", "null"],
                        "description": "the call's text, while the tenant keeps it: `request` (the messages or input), `response` (the answer's messages, one per choice, or null)",
                        "properties": { "request": {}, "response": {} },
                    }),
                )]),
            ],
        }),
    );
    add(
        "LlmSettings",
        object(&[
            (
                "visible_models",
                json!({ "type": ["array", "null"], "items": { "type": "string" }, "description": "the models the tenant's users see; null: all" }),
            ),
            ("content_logging", boolean()),
            ("content_retention_days", integer()),
            ("user_requests_per_minute", optional_integer()),
            ("user_tokens_per_minute", optional_integer()),
        ]),
    );
    add(
        "LlmUserModels",
        object(&[
            ("user_id", string()),
            (
                "models",
                json!({ "type": ["array", "null"], "items": { "type": "string" }, "description": "the only models the user may call; null: no allow-list" }),
            ),
        ]),
    );
    add(
        "Invoice",
        json!({
            "type": "object",
            "description": "as Stripe reports it",
            "properties": {
                "id": {}, "status": {}, "currency": {}, "amount_due": {}, "amount_paid": {},
                "hosted_invoice_url": {}, "invoice_pdf": {}, "created": {},
            },
        }),
    );
    add(
        "StripeReceipt",
        json!({
            "type": "object",
            "required": ["received", "handled"],
            "properties": {
                "received": boolean(),
                "handled": { "type": "boolean", "description": "false for event types Tollgate does not act on" },
                "duplicate": { "type": "boolean", "description": "true when the event id had been applied before" },
            },
        }),
    );
    schemas
}

/// The Stripe event envelope as `webhooks/stripe` reads it; the signature covers the raw body.
fn stripe_event() -> Json {
    json!({
        "type": "object",
        "required": ["id", "type", "created", "data"],
        "properties": {
            "id": string(),
            "type": string(),
            "created": integer(),
            "data": { "type": "object", "required": ["object"], "properties": { "object": { "type": "object" } } },
        },
    })
}

fn operations(schemas: &mut Schemas) -> Vec<Operation> {
    use Access::*;
    vec![
        op("get", "/health", "operations", "Liveness, with a database round trip")
            .access(Anyone)
            .ok(object(&[("status", enumeration(&["ok"]))])),
        op("get", "/openapi.json", "operations", "This document")
            .access(Anyone)
            .ok(json!({ "type": "object" })),
        op("get", "/docs", "operations", "The API reference as a web page")
            .access(Anyone)
            .html(),
        op("post", "/cron/run", "operations", "One cron run")
            .describe("404 unless `TOLLGATE_CRON_SECRET` is set; the report of the run.")
            .access(CronSecret)
            .errors(&[404])
            .ok(json!({ "type": "object", "description": "what the run did, by task" })),
        // Authentication.
        op("post", "/auth/register", "auth", "A new tenant (FREE plan) and its owner")
            .access(Anyone)
            .body(schemas.of::<tenants::Register>())
            .created(reference("Registration"))
            .errors(&[409, 429]),
        op("get", "/auth/sso/{tenant}/start", "sso", "Start signing in with the tenant's identity provider")
            .describe("A browser navigation: 302 to the provider's authorization endpoint (the code flow with PKCE, state and nonce). `provider` names one when the tenant has several (400 `provider_required`); `return_to` is where the browser lands afterwards, checked like forward-auth's.")
            .access(Anyone)
            .query("provider", string(), "the provider's id")
            .query("return_to", string(), "where to land after signing in")
            .found("to the provider")
            .errors(&[400, 404, 502]),
        op("get", "/auth/sso/callback", "sso", "Where the provider sends the browser back")
            .describe("Uses the sign-in's state once (400 `invalid_state` for a replayed, expired or unknown one), trades the code, checks the ID token (401 `sso_rejected` saying why), finds the person (linked, or the tenant's user with that verified email, or a newcomer of a proven domain; 403 `sso_domain_not_allowed` otherwise), and answers 302 with the session cookies, like a password sign-in.")
            .access(Anyone)
            .query("code", string(), "the authorization code")
            .query("state", string(), "the sign-in's state")
            .found("to `return_to`, or the console")
            .errors(&[400, 401, 403, 409, 502]),
        op("post", "/auth/login", "auth", "Sign in")
            .describe("The tenant is named by `tenant` or by the Host (`acme.<base domain>` or a custom domain).")
            .access(Anyone)
            .body(schemas.of::<sessions::Login>())
            .ok(reference("Login"))
            .errors(&[401, 403, 429]),
        op("post", "/auth/refresh", "auth", "Rotate a refresh token")
            .access(Anyone)
            .body(schemas.of::<sessions::RefreshBody>())
            .ok(reference("TokenPair"))
            .errors(&[401, 403, 429]),
        op("post", "/auth/logout", "auth", "End the session")
            .describe("Of the refresh token in the body, or else of the access token presented.")
            .access(MemberOrNone)
            .optional_body(schemas.of::<sessions::LogoutBody>())
            .no_content(),
        op("post", "/auth/forgot-password", "auth", "Mail a password-reset token")
            .describe("Answers the same whether or not the account exists.")
            .access(Anyone)
            .body(schemas.of::<recovery::Forgot>())
            .answers(202, "Accepted", reference("Status"))
            .errors(&[429]),
        op("post", "/auth/reset-password", "auth", "Set a new password with a mailed token")
            .access(Anyone)
            .body(schemas.of::<recovery::Reset>())
            .ok(reference("Status"))
            .errors(&[401, 429]),
        op("post", "/auth/change-password", "auth", "Change one's password")
            .body(schemas.of::<recovery::ChangePassword>())
            .ok(reference("Status")),
        op("post", "/auth/verify-email", "auth", "Mark the email verified with a mailed token")
            .access(Anyone)
            .body(schemas.of::<recovery::Verify>())
            .ok(object(&[("email_verified", boolean())]))
            .errors(&[401]),
        op("get", "/auth/me", "auth", "The caller: user, tenant, role and scopes")
            .ok(reference("Me")),
        op("get", "/auth/verify", "auth", "Forward authentication for a reverse proxy")
            .describe("Any method is accepted (proxies send their subrequest with the method of the request they guard). 200 with `X-Tollgate-Tenant-Id`, `-Tenant`, `-User-Id`, `-Role`, `-Scopes` and `-Auth`; 403 when the scopes do not cover the forwarded method and URI.")
            .header("X-Forwarded-Method", "the method of the guarded request")
            .header("X-Forwarded-Uri", "the URI of the guarded request")
            .header("X-Original-Method", "as X-Forwarded-Method (nginx)")
            .header("X-Original-URI", "as X-Forwarded-Uri (nginx)")
            .ok(reference("ForwardAuth")),
        op("get", "/api-keys", "api keys", "The caller's keys, or every key of the tenant for an admin")
            .paged()
            .ok(page_of("ApiKey")),
        op("post", "/api-keys", "api keys", "A new key; its secret is shown once")
            .body(schemas.of::<api_keys::CreateKey>())
            .created(reference("NewApiKey")),
        op("get", "/api-keys/{id}", "api keys", "One key").ok(reference("ApiKey")),
        op("patch", "/api-keys/{id}", "api keys", "Rename, rescope or change the expiry")
            .body(schemas.of::<api_keys::UpdateKey>())
            .ok(reference("ApiKey"))
            .errors(&[409]),
        op("delete", "/api-keys/{id}", "api keys", "Revoke").no_content(),
        // Tenancy.
        op("get", "/plans", "tenancy", "The global plans")
            .access(Anyone)
            .ok(list_of("Plan")),
        op("get", "/tenant", "tenancy", "The caller's tenant and its plan limits")
            .ok(reference("TenantWithLimits")),
        op("put", "/tenant", "tenancy", "Rename, or set the custom domain")
            .body(schemas.of::<tenants::UpdateTenant>())
            .ok(reference("TenantWithLimits"))
            .errors(&[409]),
        op("delete", "/tenant", "tenancy", "Soft-delete the tenant (owner)").no_content(),
        op("get", "/users", "tenancy", "The tenant's users")
            .paged()
            .ok(page_of("User")),
        op("post", "/users", "tenancy", "A new user, within the plan's seats")
            .body(schemas.of::<users::CreateUser>())
            .created(reference("User"))
            .errors(&[409]),
        op("get", "/users/{id}", "tenancy", "One user").ok(reference("User")),
        op("put", "/users/{id}", "tenancy", "Change name or email (admin, or oneself)")
            .body(schemas.of::<users::UpdateUser>())
            .ok(reference("User"))
            .errors(&[409]),
        op("delete", "/users/{id}", "tenancy", "Remove a user")
            .no_content()
            .errors(&[409]),
        op("put", "/users/{id}/role", "tenancy", "Change a user's role; a tenant keeps one owner")
            .body(schemas.of::<users::ChangeRole>())
            .ok(reference("User"))
            .errors(&[409]),
        op("get", "/invitations", "tenancy", "The tenant's invitations")
            .paged()
            .ok(page_of("Invitation")),
        op("post", "/invitations", "tenancy", "Invite by email")
            .body(schemas.of::<invitations::Invite>())
            .created(reference("Invitation"))
            .errors(&[409]),
        op("post", "/invitations/accept", "tenancy", "Accept an invitation: the invitee's account and tokens")
            .access(Anyone)
            .body(schemas.of::<invitations::Accept>())
            .created(reference("AcceptedInvitation"))
            .errors(&[401, 403, 409]),
        op("delete", "/invitations/{id}", "tenancy", "Revoke a pending invitation")
            .no_content(),
        // Credits.
        op("get", "/credits", "credits", "The caller's balance and the pool's")
            .ok(reference("Balances")),
        op("get", "/credits/ledger", "credits", "The caller's ledger")
            .paged()
            .ok(page_of("LedgerEntry")),
        op("get", "/credits/alerts", "credits", "Balance alerts of the caller (and the pool, for an admin)")
            .ok(list_of("CreditAlert")),
        op("put", "/credits/settings", "credits", "The pool's alert thresholds and auto top-up")
            .body(schemas.of::<accounts::Settings>())
            .ok(reference("CreditAccount")),
        op("post", "/credits/reservations", "credits", "Hold credits")
            .describe("201 with a new hold; 200 with the first one for a repeated Idempotency-Key; 402 when the credits do not fit.")
            .idempotent()
            .body(schemas.of::<reservations::Hold>())
            .created(reference("Reservation"))
            .ok(reference("Reservation"))
            .errors(&[402]),
        op("get", "/credits/reservations/{id}", "credits", "One hold").ok(reference("Reservation")),
        op("post", "/credits/reservations/{id}/settle", "credits", "Charge what was used, at most 10 % over the hold")
            .body(schemas.of::<reservations::Settle>())
            .ok(reference("Reservation"))
            .errors(&[402, 409]),
        op("post", "/credits/reservations/{id}/release", "credits", "Give the hold back uncharged")
            .ok(reference("Reservation"))
            .errors(&[409]),
        op("post", "/credits/reservations/{id}/refund", "credits", "Refund a settled charge (admin)")
            .ok(reference("Reservation"))
            .errors(&[409]),
        op("get", "/users/{id}/credits", "credits", "A user's balance and the pool's")
            .ok(reference("Balances")),
        op("get", "/users/{id}/credits/ledger", "credits", "A user's ledger")
            .paged()
            .ok(page_of("LedgerEntry")),
        op("put", "/users/{id}/credits/allowance", "credits", "A user's allowance from the pool")
            .body(schemas.of::<grants::Allowance>())
            .ok(reference("CreditAccount")),
        op("post", "/users/{id}/credits/grants", "credits", "Credits to a user")
            .body(schemas.of::<grants::Grant>())
            .created(reference("CreditMovement"))
            .ok(reference("CreditMovement"))
            .errors(&[409]),
        op("put", "/users/{id}/credits/settings", "credits", "A user's alert thresholds and auto top-up")
            .body(schemas.of::<accounts::Settings>())
            .ok(reference("CreditAccount")),
        op("post", "/admin/tenants/{id}/credits/grants", "platform admin", "Credits into a tenant's pool")
            .access(PlatformAdmin)
            .body(schemas.of::<grants::Grant>())
            .created(reference("CreditMovement"))
            .ok(reference("CreditMovement"))
            .errors(&[409]),
        op("post", "/admin/tenants/{id}/credits/adjustments", "platform admin", "A signed correction of a tenant's pool")
            .access(PlatformAdmin)
            .body(schemas.of::<grants::Grant>())
            .created(reference("CreditMovement"))
            .ok(reference("CreditMovement"))
            .errors(&[409]),
        // Usage and quotas.
        op("post", "/usage/events", "usage", "Count consumption against the quotas")
            .describe("201 with the counters after the increment; 429 with nothing counted when a limit is reached.")
            .idempotent()
            .body(schemas.of::<quota_http::UsageEvent>())
            .created(reference("UsageRecorded"))
            .ok(reference("UsageRecorded")),
        op("get", "/usage", "usage", "The caller's usage report, or the tenant's")
            .query("scope", enumeration(&["user", "tenant"]), "whose usage (tenant: admin)")
            .errors(&[400, 404])
            .ok(reference("UsageReport")),
        op("get", "/users/{id}/usage", "usage", "A user's usage report")
            .ok(reference("UsageReport")),
        op("put", "/users/{id}/quota", "usage", "A user's own limit (`null` removes it)")
            .body(schemas.of::<quota_http::SetLimit>())
            .ok(reference("QuotaLimits")),
        op("put", "/admin/tenants/{id}/quota", "platform admin", "A tenant's limit")
            .access(PlatformAdmin)
            .body(schemas.of::<quota_http::SetLimit>())
            .ok(reference("QuotaLimits")),
        op("post", "/plan-limits/check", "usage", "Whether the plan would accept this work")
            .body(schemas.of::<plan_limits::WorkRequest>())
            .ok(reference("PlanCheck")),
        // Billing.
        op("post", "/billing/checkout", "billing", "A Stripe Checkout session for a plan or a credit pack")
            .body(schemas.of::<checkout::CheckoutBody>())
            .created(object(&[("id", json!({})), ("url", json!({}))]))
            .errors(&[409, 502, 504]),
        op("post", "/billing/portal", "billing", "A Stripe customer-portal session")
            .optional_body(schemas.of::<checkout::PortalBody>())
            .created(object(&[("url", json!({}))]))
            .errors(&[409, 502, 504]),
        op("get", "/billing/invoices", "billing", "The tenant's invoices, from Stripe")
            .query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 100, "default": 50 }),
                "how many",
            )
            .errors(&[400, 409, 502, 504])
            .ok(json!({
                "type": "object",
                "required": ["data", "has_more"],
                "properties": {
                    "data": { "type": "array", "items": reference("Invoice") },
                    "has_more": {},
                },
            })),
        op("post", "/webhooks/stripe", "billing", "Signed Stripe events")
            .describe("404 unless `TOLLGATE_STRIPE_WEBHOOK_SECRET` is set. The `Stripe-Signature` header signs the raw body.")
            .access(Stripe)
            .body(stripe_event())
            .ok(reference("StripeReceipt"))
            .errors(&[409]),
        op("put", "/admin/plans/{code}/stripe-price", "platform admin", "The Stripe price of a plan (`null` takes it off sale)")
            .access(PlatformAdmin)
            .body(schemas.of::<plans::StripePrice>())
            .no_content(),
        // Webhooks.
        op("get", "/webhooks/event-types", "webhooks", "The event types endpoints may subscribe to")
            .ok(reference("EventTypes")),
        op("get", "/webhooks/endpoints", "webhooks", "The tenant's endpoints")
            .paged()
            .ok(page_of("WebhookEndpoint")),
        op("post", "/webhooks/endpoints", "webhooks", "A new endpoint; its secret is shown once")
            .body(schemas.of::<endpoints::CreateEndpoint>())
            .created(reference("WebhookEndpointWithSecret")),
        op("get", "/webhooks/endpoints/{id}", "webhooks", "One endpoint")
            .ok(reference("WebhookEndpoint")),
        op("patch", "/webhooks/endpoints/{id}", "webhooks", "Change an endpoint")
            .body(schemas.of::<endpoints::UpdateEndpoint>())
            .ok(reference("WebhookEndpoint")),
        op("delete", "/webhooks/endpoints/{id}", "webhooks", "Remove an endpoint").no_content(),
        op("post", "/webhooks/endpoints/{id}/rotate-secret", "webhooks", "A new secret; the old one signs too during the overlap")
            .ok(reference("WebhookEndpointWithSecret")),
        op("post", "/webhooks/endpoints/{id}/test", "webhooks", "Send a `webhook.test` message now")
            .ok(reference("WebhookDelivery"))
            .errors(&[409]),
        op("get", "/webhooks/endpoints/{id}/deliveries", "webhooks", "An endpoint's delivery log, newest first")
            .paged()
            .query("status", enumeration(&["pending", "succeeded", "failed"]), "only these")
            .ok(page_of("WebhookDelivery")),
        op("get", "/webhooks/deliveries/{id}", "webhooks", "One delivery with its attempts")
            .ok(reference("WebhookDelivery")),
        op("post", "/webhooks/deliveries/{id}/redeliver", "webhooks", "Send the same message again now")
            .ok(reference("WebhookDelivery"))
            .errors(&[409]),
        // Audit and reports.
        op("get", "/audit-logs", "audit", "The tenant's audit log, newest first")
            .paged()
            .query("user_id", string(), "entries about this user's actions")
            .query("actor_type", enumeration(&["user", "api_key", "platform_admin", "system", "anonymous"]), "who acted")
            .query("actor_id", string(), "who acted")
            .query("action", string(), "an action (`apikey.revoked`) or a category (`apikey.*`)")
            .query("target_type", string(), "what was acted on")
            .query("target_id", string(), "what was acted on")
            .query("since", time(), "from this time on")
            .query("until", time(), "before this time")
            .ok(page_of("AuditEntry")),
        op("get", "/audit-logs/verify", "audit", "Verify the tenant's hash chain")
            .ok(reference("AuditVerification")),
        op("get", "/admin/tenants/{id}/audit-logs", "platform admin", "A tenant's audit log")
            .access(PlatformAdmin)
            .paged()
            .query("user_id", string(), "entries about this user's actions")
            .query("actor_type", enumeration(&["user", "api_key", "platform_admin", "system", "anonymous"]), "who acted")
            .query("actor_id", string(), "who acted")
            .query("action", string(), "an action (`apikey.revoked`) or a category (`apikey.*`)")
            .query("target_type", string(), "what was acted on")
            .query("target_id", string(), "what was acted on")
            .query("since", time(), "from this time on")
            .query("until", time(), "before this time")
            .ok(page_of("AuditEntry")),
        op("get", "/admin/tenants/{id}/audit-logs/verify", "platform admin", "Verify a tenant's hash chain")
            .access(PlatformAdmin)
            .ok(reference("AuditVerification")),
        op("get", "/reports", "reports", "Usage reports, newest period first")
            .paged()
            .query("kind", enumeration(&["daily", "monthly"]), "only this kind")
            .ok(page_of("Report")),
        op("get", "/reports/{id}", "reports", "One report with its per-user lines")
            .ok(reference("Report")),
        // Jobs.
        op("post", "/jobs", "jobs", "Enqueue a ComfyUI workflow")
            .describe("Checked against the plan, paid by a credit hold and counted in the quota. 201 with a new job; 200 with the first one for a repeated Idempotency-Key.")
            .idempotent()
            .body(schemas.of::<jobs_http::CreateJob>())
            .created(reference("Job"))
            .ok(reference("Job"))
            .errors(&[402, 404]),
        op("get", "/jobs", "jobs", "The tenant's jobs, newest first")
            .paged()
            .query("status", enumeration(&["queued", "running", "succeeded", "failed", "cancelled"]), "only this status")
            .query("worker", string(), "only on this worker")
            .query("bot", string(), "only of this bot")
            .ok(page_of("Job")),
        op("get", "/jobs/{id}", "jobs", "One job").ok(reference("Job")),
        op("post", "/jobs/{id}/cancel", "jobs", "Cancel a job (no body)")
            .ok(reference("Job"))
            .errors(&[409]),
        op(
            "get",
            "/workers",
            "jobs",
            "The tenant's worker pools and the shared ones, each with the tenant's activity on it"
        )
        .ok(list_of("WorkerWithActivity")),
        op("post", "/workers", "jobs", "A dedicated worker pool, within the plan")
            .body(schemas.of::<workers::NewWorker>())
            .created(reference("Worker"))
            .errors(&[409]),
        op("get", "/workers/{id}", "jobs", "One worker pool with its runners")
            .ok(reference("WorkerWithRunners")),
        op("patch", "/workers/{id}", "jobs", "Change a worker pool")
            .body(schemas.of::<workers::WorkerChange>())
            .ok(reference("Worker"))
            .errors(&[409]),
        op("get", "/workers/{id}/runner-tokens", "jobs", "A worker pool's runner tokens")
            .ok(list_of("RunnerToken")),
        op("post", "/workers/{id}/runner-tokens", "jobs", "A runner token; its secret is shown once")
            .body(schemas.of::<runners::NewToken>())
            .created(reference("NewRunnerToken")),
        op("delete", "/workers/{id}/runner-tokens/{token}", "jobs", "Revoke a runner token")
            .no_content(),
        op("post", "/admin/workers/{id}/runner-tokens", "platform admin", "A runner token for a shared worker pool")
            .access(PlatformAdmin)
            .body(schemas.of::<runners::NewToken>())
            .created(reference("NewRunnerToken")),
        op("get", "/bots", "jobs", "Saved workflow templates")
            .paged()
            .ok(page_of("Bot")),
        op("post", "/bots", "jobs", "Save a workflow template")
            .body(schemas.of::<bots::NewBot>())
            .created(reference("Bot")),
        op("get", "/bots/{id}", "jobs", "One bot").ok(reference("Bot")),
        op("patch", "/bots/{id}", "jobs", "Change a bot")
            .body(schemas.of::<bots::BotChange>())
            .ok(reference("Bot")),
        op("delete", "/bots/{id}", "jobs", "Delete a bot; its jobs run on").no_content(),
        // The runner's side.
        op("post", "/runner/heartbeat", "runner", "A runner reports in")
            .access(Runner)
            .body(schemas.of::<runners::Heartbeat>())
            .ok(reference("RunnerSeen")),
        op("post", "/runner/claim", "runner", "Claim the next job that fits, with a lease")
            .describe("204 when no job waits.")
            .access(Runner)
            .body(schemas.of::<jobs_http::Claim>())
            .ok(reference("ClaimedJob"))
            .no_content(),
        op("post", "/runner/jobs/{id}/renew", "runner", "Extend the lease; says whether a cancel was asked")
            .access(Runner)
            .body(schemas.of::<jobs_http::Lease>())
            .ok(reference("Lease"))
            .errors(&[409]),
        op("post", "/runner/jobs/{id}/progress", "runner", "Report progress (also renews the lease)")
            .access(Runner)
            .body(schemas.of::<jobs_http::Progress>())
            .ok(reference("Lease"))
            .errors(&[409]),
        op("post", "/runner/jobs/{id}/finish", "runner", "Settle a job: status, outputs, GPU seconds")
            .access(Runner)
            .body(schemas.of::<queue::Finish>())
            .ok(reference("Job"))
            .errors(&[409]),
        op("post", "/runner/jobs/{id}/fail", "runner", "Give a job back as failed")
            .access(Runner)
            .body(schemas.of::<jobs_http::Failure>())
            .ok(reference("Job"))
            .errors(&[409]),
        // The operator.
        op("post", "/admin/login", "platform admin", "Sign in as a platform admin")
            .access(Anyone)
            .body(schemas.of::<admin::Login>())
            .ok(reference("AdminToken"))
            .errors(&[401, 429]),
        op(
            "post",
            "/admin/tenants/{id}/sso/domains/{domain}/approve",
            "platform admin",
            "Vouch that the tenant owns an email domain it added"
        )
        .access(PlatformAdmin)
        .ok(reference("SsoDomain"))
        .errors(&[409]),
        op("get", "/admin/tenants", "platform admin", "Every tenant, newest first")
            .access(PlatformAdmin)
            .paged()
            .query(
                "q",
                string(),
                "only tenants whose slug, name or custom domain contains this (any case)",
            )
            .ok(page_of("AdminTenant")),
        op("post", "/admin/tenants/{id}/suspend", "platform admin", "Suspend a tenant")
            .access(PlatformAdmin)
            .no_content(),
        op("post", "/admin/tenants/{id}/reactivate", "platform admin", "Reactivate a tenant")
            .access(PlatformAdmin)
            .no_content(),
        op("put", "/admin/tenants/{id}/plan", "platform admin", "Assign a plan, with per-tenant overrides")
            .access(PlatformAdmin)
            .body(schemas.of::<admin::AssignPlan>())
            .no_content(),
        op("get", "/admin/audit-logs", "platform admin", "Platform admins' changes outside every tenant, newest first")
            .describe("The platform's LLM provider keys and the global model catalogue; tenants' changes are in their own audit logs.")
            .access(PlatformAdmin)
            .paged()
            .query("action", string(), "an action (`llm_model.created`) or a category (`llm_model.*`)")
            .ok(page_of("PlatformAuditEntry")),
        // The LLM gateway's catalogue (its OpenAI-compatible calls live under `/v1`).
        op("get", "/sso/providers", "sso", "The tenant's identity providers")
            .describe("Owners and admins. The client secret is never returned.")
            .ok(list_of("SsoProvider")),
        op("post", "/sso/providers", "sso", "Add an identity provider")
            .describe("Owners and admins. `kind` `oidc` with an `issuer`, or the presets `google` and `microsoft` (with `microsoft_tenant`: a directory, or `organizations`). The secret is sealed under the operator's master key; 503 `secrets_not_configured` without one.")
            .body(schemas.of::<sso::providers::NewProvider>())
            .created(reference("SsoProvider")),
        op("delete", "/sso/providers/{id}", "sso", "Remove an identity provider and its links")
            .no_content(),
        op("get", "/sso/settings", "sso", "Whether members must use SSO, and newcomers' role")
            .ok(reference("SsoSettings")),
        op("put", "/sso/settings", "sso", "Require SSO of members (owners keep their password), set newcomers' role")
            .body(schemas.of::<sso::providers::Settings>())
            .ok(reference("SsoSettings")),
        op("get", "/sso/domains", "sso", "The email domains whose people join on their first sign-in")
            .ok(list_of("SsoDomain")),
        op("post", "/sso/domains", "sso", "Add a domain, with the TXT record that proves it")
            .describe("409 `domain_taken` when another tenant has proven it.")
            .body(schemas.of::<sso::domains::NewDomain>())
            .created(reference("SsoDomain"))
            .errors(&[409]),
        op("delete", "/sso/domains/{domain}", "sso", "Remove a domain: nobody new joins by it")
            .no_content(),
        op("post", "/sso/domains/{domain}/verify", "sso", "Look up the domain's TXT record")
            .describe("Through the operator's DNS-over-HTTPS resolver. 409 `domain_not_verified` when the record is not there yet, `dns_verification_unavailable` when no resolver is configured, `domain_taken` when another tenant proved it first; 502 `dns_unavailable`.")
            .ok(reference("SsoDomain"))
            .errors(&[409, 502]),
        op("get", "/llm/provider-keys", "llm", "The tenant's provider keys, then the platform's it may deploy on")
            .describe("Owners and admins. The platform's keys show no base URL and no last four characters.")
            .paged()
            .ok(page_of("LlmProviderKey")),
        op("post", "/llm/provider-keys", "llm", "Bring your own provider key")
            .describe("Sealed at rest under the operator's master key and never returned; 503 `secrets_not_configured` without one.")
            .body(schemas.of::<llm_keys::NewProviderKey>())
            .created(reference("LlmProviderKey")),
        op("delete", "/llm/provider-keys/{id}", "llm", "Remove one of the tenant's provider keys")
            .describe("409 `provider_key_in_use` while a model deploys on it.")
            .no_content()
            .errors(&[409]),
        op("get", "/llm/models", "llm", "The tenant's models, and the global ones it does not override")
            .paged()
            .ok(page_of("LlmModel")),
        op("post", "/llm/models", "llm", "Add a model, or override the global one of the same name")
            .describe("Deploys on the tenant's keys or the platform's; 409 `model_name_taken` when another of the tenant's models answers to a name.")
            .body(schemas.of::<llm_models::ModelBody>())
            .created(reference("LlmModel"))
            .errors(&[409]),
        op("put", "/llm/models/{id}", "llm", "Replace one of the tenant's models")
            .body(schemas.of::<llm_models::ModelBody>())
            .ok(reference("LlmModel"))
            .errors(&[409]),
        op("delete", "/llm/models/{id}", "llm", "Remove one of the tenant's models").no_content(),
        op("get", "/llm/interactions", "llm", "Calls made through the gateway, newest first")
            .describe("A member sees their own; owners and admins every call of the tenant.")
            .paged()
            .query("endpoint", enumeration(&["chat", "embeddings"]), "only calls of this OpenAI route")
            .query("model", string(), "the catalogue's name of the model")
            .query("status", enumeration(&["succeeded", "failed"]), "only this outcome")
            .query("since", time(), "from this time on")
            .query("until", time(), "before this time")
            .query("user_id", string(), "only this user's (owners and admins)")
            .ok(page_of("LlmInteraction")),
        op("get", "/llm/interactions/{id}", "llm", "One call, with its text while the tenant keeps it")
            .describe("A member sees their own; owners and admins every call of the tenant.")
            .ok(reference("LlmInteractionWithContent")),
        op("get", "/llm/settings", "llm", "The tenant's gateway policy")
            .describe("Owners and admins.")
            .ok(reference("LlmSettings")),
        op("put", "/llm/settings", "llm", "Choose the models the tenant's users see, and whether the text of calls is kept")
            .describe("Replaces the whole policy; absent fields take their defaults (every model, no text kept, 30 days). Owners and admins.")
            .body(schemas.of::<llm_policy::Settings>())
            .ok(reference("LlmSettings")),
        op("get", "/llm/users/{id}/models", "llm", "A user's model allow-list")
            .describe("Owners and admins.")
            .ok(reference("LlmUserModels")),
        op("put", "/llm/users/{id}/models", "llm", "Set or remove a user's model allow-list")
            .describe("Other models answer 403 `model_not_allowed` to that user. Owners and admins.")
            .body(schemas.of::<llm_policy::UserModels>())
            .ok(reference("LlmUserModels")),
        op("get", "/admin/llm/provider-keys", "platform admin", "The platform's provider keys")
            .access(PlatformAdmin)
            .paged()
            .ok(page_of("LlmProviderKey")),
        op("post", "/admin/llm/provider-keys", "platform admin", "A platform provider key, for global models and any tenant's")
            .access(PlatformAdmin)
            .body(schemas.of::<llm_keys::NewProviderKey>())
            .created(reference("LlmProviderKey")),
        op("delete", "/admin/llm/provider-keys/{id}", "platform admin", "Remove a platform provider key")
            .access(PlatformAdmin)
            .no_content()
            .errors(&[409]),
        op("get", "/admin/llm/models", "platform admin", "The global model catalogue")
            .access(PlatformAdmin)
            .paged()
            .ok(page_of("LlmModel")),
        op("post", "/admin/llm/models", "platform admin", "A global model, on the platform's keys")
            .access(PlatformAdmin)
            .body(schemas.of::<llm_models::ModelBody>())
            .created(reference("LlmModel"))
            .errors(&[409]),
        op("put", "/admin/llm/models/{id}", "platform admin", "Replace a global model")
            .access(PlatformAdmin)
            .body(schemas.of::<llm_models::ModelBody>())
            .ok(reference("LlmModel"))
            .errors(&[409]),
        op("delete", "/admin/llm/models/{id}", "platform admin", "Remove a global model")
            .access(PlatformAdmin)
            .no_content(),
        op("get", "/admin/emails", "platform admin", "The email outbox (never the bodies)")
            .access(PlatformAdmin)
            .paged()
            .query("status", enumeration(&["pending", "sent", "failed"]), "only this status")
            .query("tenant_id", string(), "only this tenant's")
            .ok(json!({
                "allOf": [
                    page_of("Mail"),
                    object(&[("delivery_configured", boolean())]),
                ],
            })),
    ]
}

/// The whole document.
pub fn document() -> Json {
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    for operation in operations(&mut schemas) {
        let item = paths.entry(operation.path).or_insert_with(|| json!({}));
        item[operation.method] = operation.to_json();
    }
    let mut components = response_schemas();
    for (name, schema) in schemas.0 {
        components.insert(
            name,
            serde_json::to_value(schema).expect("schemas serialize"),
        );
    }
    let responses: Map<String, Json> = ERRORS
        .iter()
        .map(|(_, name, description)| {
            let mut response = json!({
                "description": description,
                "content": { "application/json": { "schema": reference("Error") } },
            });
            if matches!(*name, "TooManyRequests" | "ServiceUnavailable") {
                response["headers"] = json!({ "Retry-After": {
                    "description": "seconds to wait",
                    "schema": { "type": "integer" },
                } });
            }
            if *name == "Unauthorized" {
                response["headers"] = json!({ "WWW-Authenticate": {
                    "description": "the scheme to authenticate with",
                    "schema": { "type": "string" },
                } });
            }
            ((*name).to_owned(), response)
        })
        .collect();
    let rate_header =
        |description: &str| json!({ "description": description, "schema": { "type": "integer" } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "The gate in front of paid AI workloads: tenants, credentials, credits, quotas, jobs and billing.",
            "description": "JSON under `/api/v1`. Every error has one shape, `{\"error\":{\"code\",\"message\",\"details\"}}`. Request bodies are JSON, sent with `Content-Type: application/json` (or `application/*+json`); anything else answers 415. The LLM gateway's calls (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`) are outside this document: they speak OpenAI's API, errors included, so OpenAI's SDKs work with `base_url=<host>/v1`.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "/api/v1" }],
        "tags": [
            { "name": "auth" }, { "name": "sso" }, { "name": "api keys" }, { "name": "tenancy" },
            { "name": "credits" }, { "name": "usage" }, { "name": "billing" },
            { "name": "webhooks" }, { "name": "audit" }, { "name": "reports" },
            { "name": "jobs" }, { "name": "runner" }, { "name": "llm" }, { "name": "platform admin" },
            { "name": "operations" },
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": responses,
            "headers": {
                "RateLimit-Limit": rate_header("the caller's requests per minute"),
                "RateLimit-Remaining": rate_header("requests left in this minute"),
                "RateLimit-Reset": rate_header("seconds until the window resets"),
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An access token (JWT, from `auth/login`, `auth/register` or `admin/login`) or an API key `tg_…`",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key `tg_…`",
                },
                "runnerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A runner token `tgr_…` (also accepted in `X-API-Key`)",
                },
                "cronSecret": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`TOLLGATE_CRON_SECRET`",
                },
                "stripeSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Stripe-Signature",
                    "description": "Stripe's signature of the raw body with the endpoint's `whsec_…` secret",
                },
            },
        },
    })
}
