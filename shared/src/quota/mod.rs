//! Counters and limits. This issue brings the request rate limits; daily and monthly
//! quotas and plan limits join them here.

pub mod rate_limit;
