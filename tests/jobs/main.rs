//! Black-box tests of GPU jobs: the jobs API, workers and bots, and the queue driven through
//! the runner endpoints with runner tokens, against the real server.

mod api;
mod bounds;
mod metrics;
mod pricing;
mod queue;
mod support;
mod visibility;
mod workers;
