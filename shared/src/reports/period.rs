//! Which period a report covers: the UTC day or calendar month that ended last.
//!
//! Reports are built only for periods that have ended, because only then do their
//! counters and ledger rows stop changing, which is what lets a report be built once and
//! never rewritten. The windows are the quota module's, so a report's day is exactly the
//! day its counters were kept for.

use serde::Serialize;

use crate::{
    ApiError,
    error::ApiResult,
    quota::{
        metrics::Period,
        periods::{Window, date_label},
    },
};

/// A daily or a monthly report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Daily,
    Monthly,
}

impl ReportKind {
    pub const ALL: [ReportKind; 2] = [ReportKind::Daily, ReportKind::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Daily => "daily",
            ReportKind::Monthly => "monthly",
        }
    }

    /// The kind named by query parameter `kind`, or 400.
    pub fn parse_query(text: &str) -> ApiResult<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "kind must be daily or monthly"))
    }

    /// The outbox event a new report of this kind is announced by.
    pub fn event_type(self) -> &'static str {
        match self {
            ReportKind::Daily => "report.daily",
            ReportKind::Monthly => "report.monthly",
        }
    }

    /// The counter period whose rows the report reads.
    pub fn counter_period(self) -> Period {
        match self {
            ReportKind::Daily => Period::Day,
            ReportKind::Monthly => Period::Month,
        }
    }
}

/// One reported period: `start` inclusive, `end` exclusive, and its name (`2024-03-14`
/// for a day, `2024-03` for a month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPeriod {
    pub kind: ReportKind,
    pub label: String,
    pub start: i64,
    pub end: i64,
}

impl ReportPeriod {
    /// The period of `kind` that ended last at `now`: yesterday, or last month.
    pub fn just_ended(kind: ReportKind, now: i64) -> Self {
        let current = Window::containing(kind.counter_period(), now);
        let previous = Window::containing(kind.counter_period(), current.start - 1);
        let day = date_label(previous.start);
        let label = match kind {
            ReportKind::Daily => day,
            ReportKind::Monthly => day[..7].to_owned(),
        };
        Self {
            kind,
            label,
            start: previous.start,
            end: previous.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp()
    }

    fn ended(kind: ReportKind, now: &str) -> (String, i64, i64) {
        let period = ReportPeriod::just_ended(kind, at(now));
        (period.label, period.start, period.end)
    }

    #[test]
    fn the_daily_report_covers_yesterday_from_the_first_second_of_today() {
        let yesterday = (
            "2024-03-14".to_owned(),
            at("2024-03-14T00:00:00Z"),
            at("2024-03-15T00:00:00Z"),
        );
        assert_eq!(ended(ReportKind::Daily, "2024-03-15T00:00:00Z"), yesterday);
        assert_eq!(ended(ReportKind::Daily, "2024-03-15T23:59:59Z"), yesterday);
        assert_eq!(
            ended(ReportKind::Daily, "2024-03-14T23:59:59Z").0,
            "2024-03-13"
        );
    }

    #[test]
    fn the_monthly_report_covers_last_month_whatever_its_length() {
        assert_eq!(
            ended(ReportKind::Monthly, "2024-03-01T00:00:00Z"),
            (
                "2024-02".to_owned(),
                at("2024-02-01T00:00:00Z"),
                at("2024-03-01T00:00:00Z")
            )
        );
        let february = ReportPeriod::just_ended(ReportKind::Monthly, at("2023-03-31T23:59:59Z"));
        assert_eq!(february.label, "2023-02");
        assert_eq!(february.end - february.start, 28 * 86_400);
        let april = ReportPeriod::just_ended(ReportKind::Monthly, at("2024-05-20T12:00:00Z"));
        assert_eq!(april.end - april.start, 30 * 86_400);
    }

    #[test]
    fn january_reports_on_december_of_the_year_before() {
        assert_eq!(
            ended(ReportKind::Monthly, "2024-01-01T00:00:00Z"),
            (
                "2023-12".to_owned(),
                at("2023-12-01T00:00:00Z"),
                at("2024-01-01T00:00:00Z")
            )
        );
        assert_eq!(
            ended(ReportKind::Daily, "2024-01-01T00:00:00Z").0,
            "2023-12-31"
        );
    }

    #[test]
    fn a_leap_day_is_reported_on_the_first_of_march() {
        assert_eq!(
            ended(ReportKind::Daily, "2024-03-01T08:00:00Z").0,
            "2024-02-29"
        );
    }

    #[test]
    fn kinds_name_their_events_and_refuse_unknown_names() {
        assert_eq!(ReportKind::Daily.event_type(), "report.daily");
        assert_eq!(ReportKind::Monthly.event_type(), "report.monthly");
        assert_eq!(ReportKind::parse_query("monthly"), Ok(ReportKind::Monthly));
        let error = ReportKind::parse_query("weekly").unwrap_err();
        assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
    }
}
