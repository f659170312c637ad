//! Tollgate behind real reverse proxies: nginx (`auth_request`) and Traefik
//! (`forwardAuth`), each configured by the files shipped in `deploy/`, ask
//! `GET /api/v1/auth/verify` about every request to the services behind them and let through
//! only what Tollgate allows. The same scenarios run through both: credentials and scopes,
//! every encoding of a path that climbs from one service's prefix to another's, and the
//! client address taken from `X-Forwarded-For`.

mod browser;
mod nginx;
mod scenarios;
mod support;
mod traefik;
