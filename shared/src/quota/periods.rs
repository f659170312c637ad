//! Where counting windows begin and end: the UTC day and the UTC calendar month.
//!
//! Pure functions of `now` (Unix seconds from the `Clock` port, never the system time), so
//! the boundaries — the last second of a day, the end of a month, a leap February — are
//! unit-tested here rather than discovered in production.

use chrono::{DateTime, Datelike, NaiveDate};

use super::metrics::Period;

pub const SECONDS_PER_DAY: i64 = 86_400;

/// One period: `start` inclusive, `end` exclusive (the moment the counter resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The period of kind `period` that contains `now`.
    pub fn containing(period: Period, now: i64) -> Self {
        match period {
            Period::Day => {
                let start = now - now.rem_euclid(SECONDS_PER_DAY);
                Window {
                    start,
                    end: start + SECONDS_PER_DAY,
                }
            }
            Period::Month => {
                let date = date_of(now);
                let first = first_of_month(date.year(), date.month());
                let next = if date.month() == 12 {
                    first_of_month(date.year() + 1, 1)
                } else {
                    first_of_month(date.year(), date.month() + 1)
                };
                Window {
                    start: midnight(first),
                    end: midnight(next),
                }
            }
        }
    }

    /// Seconds from `now` until the counter resets: what `Retry-After` says.
    pub fn seconds_left(&self, now: i64) -> i64 {
        (self.end - now).max(0)
    }

    /// Whole days in the window.
    pub fn days(&self) -> i64 {
        (self.end - self.start) / SECONDS_PER_DAY
    }

    /// The start of each UTC day of the window, in order.
    pub fn day_starts(&self) -> impl Iterator<Item = i64> {
        (self.start..self.end).step_by(SECONDS_PER_DAY as usize)
    }
}

/// How far into its month `now` is: the basis of the end-of-month projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthProgress {
    pub days_in_month: i64,
    /// Days begun so far, today included: 1 on the first of the month.
    pub days_elapsed: i64,
}

impl MonthProgress {
    pub fn at(now: i64) -> Self {
        let month = Window::containing(Period::Month, now);
        let today = Window::containing(Period::Day, now);
        MonthProgress {
            days_in_month: month.days(),
            days_elapsed: (today.start - month.start) / SECONDS_PER_DAY + 1,
        }
    }
}

/// The UTC calendar date of a moment, as `YYYY-MM-DD`.
pub fn date_label(unix_seconds: i64) -> String {
    date_of(unix_seconds).format("%Y-%m-%d").to_string()
}

fn date_of(unix_seconds: i64) -> NaiveDate {
    DateTime::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .date_naive()
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month exists")
}

fn midnight(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    #[test]
    fn the_last_second_of_a_day_belongs_to_it_and_the_next_starts_a_new_day() {
        let last = at("2024-03-14T23:59:59Z");
        let day = Window::containing(Period::Day, last);
        assert_eq!(day.start, at("2024-03-14T00:00:00Z"));
        assert_eq!(day.end, at("2024-03-15T00:00:00Z"));
        assert_eq!(day.seconds_left(last), 1);
        let next = Window::containing(Period::Day, last + 1);
        assert_eq!(next.start, day.end);
        assert_eq!(next.seconds_left(last + 1), SECONDS_PER_DAY);
    }

    #[test]
    fn a_month_ends_at_midnight_of_the_first_of_the_next() {
        let month = Window::containing(Period::Month, at("2024-04-30T23:59:59Z"));
        assert_eq!(month.start, at("2024-04-01T00:00:00Z"));
        assert_eq!(month.end, at("2024-05-01T00:00:00Z"));
        assert_eq!(month.days(), 30);
        let next = Window::containing(Period::Month, at("2024-05-01T00:00:00Z"));
        assert_eq!(next.start, month.end);
    }

    #[test]
    fn december_rolls_into_january_of_the_next_year() {
        let month = Window::containing(Period::Month, at("2023-12-31T12:00:00Z"));
        assert_eq!(month.end, at("2024-01-01T00:00:00Z"));
        assert_eq!(month.days(), 31);
    }

    #[test]
    fn a_leap_february_has_29_days_and_a_common_one_28() {
        let leap = Window::containing(Period::Month, at("2024-02-29T08:00:00Z"));
        assert_eq!(leap.days(), 29);
        assert_eq!(leap.end, at("2024-03-01T00:00:00Z"));
        let common = Window::containing(Period::Month, at("2023-02-28T23:59:59Z"));
        assert_eq!(common.days(), 28);
        assert_eq!(common.end, at("2023-03-01T00:00:00Z"));
        assert_eq!(
            MonthProgress::at(at("2024-02-29T23:59:59Z")),
            MonthProgress {
                days_in_month: 29,
                days_elapsed: 29
            }
        );
    }

    #[test]
    fn the_first_second_of_a_month_is_its_first_elapsed_day() {
        let progress = MonthProgress::at(at("2024-07-01T00:00:00Z"));
        assert_eq!(progress.days_elapsed, 1);
        assert_eq!(progress.days_in_month, 31);
        assert_eq!(
            MonthProgress::at(at("2024-07-01T23:59:59Z")).days_elapsed,
            1
        );
        assert_eq!(
            MonthProgress::at(at("2024-07-02T00:00:00Z")).days_elapsed,
            2
        );
    }

    #[test]
    fn a_month_lists_each_of_its_days() {
        let month = Window::containing(Period::Month, at("2024-02-10T10:00:00Z"));
        let days: Vec<i64> = month.day_starts().collect();
        assert_eq!(days.len(), 29);
        assert_eq!(date_label(days[0]), "2024-02-01");
        assert_eq!(date_label(days[28]), "2024-02-29");
    }

    #[test]
    fn times_before_1970_still_fall_in_their_day() {
        let day = Window::containing(Period::Day, -1);
        assert_eq!(day.start, -SECONDS_PER_DAY);
        assert_eq!(day.end, 0);
    }
}
