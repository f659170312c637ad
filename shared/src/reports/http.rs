//! `GET reports` and `GET reports/{id}`, for a tenant's owners and admins (`ReportsRead`,
//! scope `reports:read`): per-user lines name the tenant's users and what they spent.
//!
//! Lists carry each report's totals; one report carries its per-user and per-model lines too,
//! which can be long for a large tenant.

use serde_json::{Value as Json, json};

use super::{content::summary, period::ReportKind};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    sql,
};

/// The filters a list takes besides its page; any other parameter is refused.
const FILTERS: &[&str] = &["kind"];

const COLUMNS: &str = "id, kind, period, period_start, period_end, content, created_at";

/// `GET /api/v1/reports?kind=daily|monthly`: the tenant's reports, latest period first.
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::ReportsRead)?;
    let page = request.filtered_page(FILTERS)?;
    let kind = request
        .query_param("kind")
        .map(|text| ReportKind::parse_query(&text))
        .transpose()?
        .map(ReportKind::as_str);
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {COLUMNS} FROM usage_reports
                 WHERE tenant_id = ? AND (? IS NULL OR kind = ?)
                 ORDER BY period_start DESC, kind, id LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            kind,
            kind,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let reports = rows
        .iter()
        .map(|row| report_json(&row, false))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(reports)))
}

/// `GET /api/v1/reports/{id}`: one report with its per-user lines; another tenant's is 404.
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::ReportsRead)?;
    let rows = env
        .db
        .execute(sql!(
            format!("SELECT {COLUMNS} FROM usage_reports WHERE id = ? AND tenant_id = ?"),
            id,
            &principal.tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("report"))?;
    Ok(ok(&report_json(&row, true)?))
}

fn report_json(row: &Row<'_>, with_lines: bool) -> ApiResult<Json> {
    let content: Json = serde_json::from_str(&row.get::<String>("content")?)
        .map_err(|error| ApiError::internal().caused_by(error.to_string()))?;
    let mut report = json!({
        "id": row.get::<String>("id")?,
        "kind": row.get::<String>("kind")?,
        "period": row.get::<String>("period")?,
        "period_start": rfc3339(row.get("period_start")?),
        "period_end": rfc3339(row.get("period_end")?),
        "created_at": rfc3339(row.get("created_at")?),
    });
    let totals = summary(&content);
    report["usage"] = totals["usage"].clone();
    report["credits"] = totals["credits"].clone();
    if with_lines {
        report["users"] = content["users"].clone();
        // Reports stored before the gateway recorded calls have no such lines.
        report["llm_by_model"] = content.get("llm_by_model").cloned().unwrap_or(json!([]));
    }
    Ok(report)
}
