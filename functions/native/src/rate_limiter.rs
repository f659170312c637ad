//! The native server's [`RateLimiter`]: the requests of every worker thread share one
//! process, so the per-minute counters of authenticated callers live in its memory and a
//! request that only reads writes nothing to the database.
//!
//! What it guarantees: the same fixed windows, limits and `RateLimit-*` headers as the
//! database counter, exact within this process. Several processes serving one tenant each
//! keep their own counters, so N processes let a caller through up to N times its limit
//! per minute (a load balancer that spreads one key evenly over them gives each about 1/N
//! of its requests). Counters start again at zero when the process restarts. Where the limit
//! must hold exactly across instances, `TOLLGATE_RATE_LIMITER=database` keeps the counters
//! in the database (one write per request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate::rate_limit::{Limit, RateLimiter};

#[derive(Clone, Default)]
pub struct InProcessRateLimiter(Arc<Mutex<Windows>>);

#[derive(Default)]
struct Windows {
    by_bucket: HashMap<String, Window>,
    /// The map is swept of ended windows when it grows to this size, so it holds about the
    /// buckets seen in the current window while each sweep stays amortised over the inserts.
    sweep_at: usize,
}

struct Window {
    start: i64,
    end: i64,
    hits: i64,
}

/// The smallest map worth sweeping.
const MIN_SWEEP_AT: usize = 1024;

impl RateLimiter for InProcessRateLimiter {
    fn counts_in_database(&self) -> bool {
        false
    }

    fn hit(&self, limit: &Limit, now: i64) -> Option<i64> {
        let start = limit.window_start(now);
        // A panic elsewhere cannot leave a counter half-changed: every change is one store.
        let mut windows = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(window) = windows.by_bucket.get_mut(&limit.bucket) {
            if window.start != start {
                *window = Window::starting(start, limit);
            }
            window.hits += 1;
            return Some(window.hits);
        }
        if windows.by_bucket.len() >= windows.sweep_at {
            windows.by_bucket.retain(|_, window| window.end > now);
            windows.sweep_at = (windows.by_bucket.len() * 2).max(MIN_SWEEP_AT);
        }
        let mut window = Window::starting(start, limit);
        window.hits = 1;
        windows.by_bucket.insert(limit.bucket.clone(), window);
        Some(1)
    }
}

impl Window {
    fn starting(start: i64, limit: &Limit) -> Self {
        Window {
            start,
            end: start + limit.window_seconds,
            hits: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_counted_per_bucket_and_start_again_in_the_next_window() {
        let limiter = InProcessRateLimiter::default();
        let ours = Limit::per_minute("key:a", 2);
        let theirs = Limit::per_minute("key:b", 2);
        assert_eq!(limiter.hit(&ours, 120), Some(1));
        assert_eq!(limiter.hit(&ours, 179), Some(2));
        assert_eq!(limiter.hit(&theirs, 179), Some(1));
        assert_eq!(limiter.hit(&ours, 180), Some(1));
    }

    #[test]
    fn ended_windows_are_swept_once_the_map_grows() {
        let limiter = InProcessRateLimiter::default();
        for n in 0..MIN_SWEEP_AT {
            limiter.hit(&Limit::per_minute(format!("key:{n}"), 1), 0);
        }
        limiter.hit(&Limit::per_minute("key:late", 1), 60);
        let windows = limiter.0.lock().unwrap();
        assert_eq!(windows.by_bucket.len(), 1);
        assert_eq!(windows.sweep_at, MIN_SWEEP_AT);
    }

    #[test]
    fn threads_sharing_the_limiter_count_every_hit() {
        let limiter = InProcessRateLimiter::default();
        let limit = Limit::per_minute("key:shared", 1_000);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        limiter.hit(&limit, 60);
                    }
                });
            }
        });
        assert_eq!(limiter.hit(&limit, 60), Some(1_001));
    }
}
