//! The top of the crate: the request pipeline and the router. One function serves the whole
//! HTTP API, [`serve`] (or [`handle`], answering everything whole); it refuses what no route
//! should see (a body over the limit), then [`routes`] wires each path to its capability's
//! handler, which authenticates, limits and answers. Nothing below imports this module:
//! capabilities are written with the primitives of [`crate::api`].

pub mod openapi;
mod routes;

use std::rc::Rc;

use bytes::Bytes;
use http::Request;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Reply, Response, payload_too_large},
};

/// Serves one API request, answering whole: a request for a stream is refused with 400 (see
/// [`serve`] for runtimes that can stream). Never fails: every error becomes its JSON
/// response.
pub async fn handle(request: Request<Bytes>, env: &Env) -> Response {
    if let Some(refused) = oversized(&request, env) {
        return refused;
    }
    let request = ApiRequest::new(request, env.config.trusted_proxy_hops);
    match routes::route(env, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// As [`handle`], on a runtime that runs a [`Streamed`] reply's driver: a chat completion
/// with `stream: true` answers its events as the provider writes them.
pub async fn serve(request: Request<Bytes>, env: Rc<Env>) -> Reply {
    if let Some(refused) = oversized(&request, &env) {
        return Reply::Whole(refused);
    }
    let request = ApiRequest::new(request, env.config.trusted_proxy_hops);
    match request.path.strip_prefix("/v1/") {
        Some(path) => crate::llm::serve(env.clone(), &request, path).await,
        None => Reply::Whole(match routes::route(&env, &request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }),
    }
}

/// The answer to a body over the limit, if it is.
fn oversized(request: &Request<Bytes>, env: &Env) -> Option<Response> {
    (request.body().len() > env.config.max_body_bytes).then(|| {
        refusal(
            request.uri().path(),
            payload_too_large(env.config.max_body_bytes),
        )
    })
}

/// An error answered before the request reached its route (a body too large, unreadable
/// or too slow to come), in the shape of the routes `path` belongs to: OpenAI's under
/// `/v1/`, so the SDKs raise their own classes, Tollgate's everywhere else.
pub fn refusal(path: &str, error: ApiError) -> Response {
    match path.starts_with("/v1/") {
        true => crate::llm::errors::response(error),
        false => error.into_response(),
    }
}
