//! The figures `GET usage` derives from raw counters: what remains, the share used, the
//! daily average and the end-of-month projection. Pure arithmetic, unit-tested at its edges
//! (nothing used, a zero limit, the first and last day of a month).

use super::periods::MonthProgress;

/// What is left of `limit` after `used`; `None` when there is no limit.
pub fn remaining(used: i64, limit: Option<i64>) -> Option<i64> {
    limit.map(|limit| (limit - used).max(0))
}

/// `used` as a percentage of `limit`, to one decimal; `None` when there is no limit. A zero
/// limit is fully used: nothing may be consumed.
pub fn percent_used(used: i64, limit: Option<i64>) -> Option<f64> {
    limit.map(|limit| {
        if limit <= 0 {
            100.0
        } else {
            round_to(used as f64 * 100.0 / limit as f64, 1)
        }
    })
}

/// The month so far, extrapolated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// This month's consumption per elapsed day (today counts as elapsed), to two decimals.
    pub daily_average: f64,
    /// The daily average times the days in the month, rounded to a whole unit.
    pub month_end: i64,
}

impl Projection {
    pub fn of(month_used: i64, progress: MonthProgress) -> Self {
        let elapsed = progress.days_elapsed.max(1);
        let scaled = i128::from(month_used) * i128::from(progress.days_in_month);
        // Rounded half up, in integers, so large counters do not lose precision to floats.
        let month_end = (scaled * 2 + i128::from(elapsed)) / (2 * i128::from(elapsed));
        Projection {
            daily_average: round_to(month_used as f64 / elapsed as f64, 2),
            month_end: i64::try_from(month_end).unwrap_or(i64::MAX),
        }
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(days_elapsed: i64, days_in_month: i64) -> MonthProgress {
        MonthProgress {
            days_in_month,
            days_elapsed,
        }
    }

    #[test]
    fn on_the_first_day_the_projection_is_a_month_of_today() {
        let projection = Projection::of(10, progress(1, 31));
        assert_eq!(projection.daily_average, 10.0);
        assert_eq!(projection.month_end, 310);
    }

    #[test]
    fn on_the_last_day_the_projection_is_what_was_used() {
        let projection = Projection::of(123, progress(30, 30));
        assert_eq!(projection.month_end, 123);
        assert_eq!(projection.daily_average, 4.1);
    }

    #[test]
    fn a_leap_february_projects_over_29_days() {
        // 58 in 10 days: 5.8 a day, 168.2 over 29 days.
        let projection = Projection::of(58, progress(10, 29));
        assert_eq!(projection.daily_average, 5.8);
        assert_eq!(projection.month_end, 168);
    }

    #[test]
    fn the_projection_rounds_half_up() {
        // 1 in 2 days of a 31-day month: 15.5.
        assert_eq!(Projection::of(1, progress(2, 31)).month_end, 16);
        // 1 in 3 days of a 31-day month: 10.33.
        assert_eq!(Projection::of(1, progress(3, 31)).month_end, 10);
        assert_eq!(Projection::of(1, progress(3, 31)).daily_average, 0.33);
    }

    #[test]
    fn nothing_used_projects_nothing() {
        assert_eq!(
            Projection::of(0, progress(15, 30)),
            Projection {
                daily_average: 0.0,
                month_end: 0
            }
        );
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        assert_eq!(
            Projection::of(i64::MAX / 2, progress(1, 31)).month_end,
            i64::MAX
        );
    }

    #[test]
    fn remaining_and_percent_follow_the_limit() {
        assert_eq!(remaining(30, Some(50)), Some(20));
        assert_eq!(remaining(60, Some(50)), Some(0));
        assert_eq!(remaining(60, None), None);
        assert_eq!(percent_used(1, Some(3)), Some(33.3));
        assert_eq!(percent_used(50, Some(50)), Some(100.0));
        assert_eq!(percent_used(0, Some(0)), Some(100.0));
        assert_eq!(percent_used(7, None), None);
    }
}
