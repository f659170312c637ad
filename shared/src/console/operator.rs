//! The platform operator's console, `/console/admin`: tenants (search, suspend and
//! reinstate, plan and overrides, credit grants, approving an email domain for single
//! sign-on), plans (their limits and Stripe prices) and the email outbox. Each panel is one
//! call of the admin API.
//!
//! The operator signs in with the admin API's own login, whose access token is stateless
//! and short-lived (`access_token_ttl`) and has no refresh: the script keeps it in the
//! tab's `sessionStorage` and sends it as a bearer token, so it is gone with the tab, no
//! cookie carries it (nothing to forge across sites), and the admin API needs no second
//! way in.

use bytes::Bytes;
use http::StatusCode;

use super::{Look, page};
use crate::api::Response;

/// `GET /console/admin`: the page the operator's script fills.
pub(super) fn shell(look: &Look) -> Response {
    page(
        look,
        StatusCode::OK,
        "Operator console",
        "<header><nav aria-label=\"Operator\" hidden><a href=\"#tenants\">Tenants</a> <a href=\"#plans\">Plans</a> <a href=\"#emails\">Email outbox</a></nav></header>
<div id=\"view\" aria-live=\"polite\"><p>Loading…</p></div>
<script type=\"module\" src=\"/console/operator.js\"></script>",
    )
}

/// The operator console's script.
pub(super) fn script() -> Response {
    super::static_script(Bytes::from_static(include_bytes!("operator.js")))
}

#[cfg(test)]
mod tests {
    use http::header;

    use super::*;

    #[test]
    fn the_shell_loads_the_operators_script_and_nothing_from_elsewhere() {
        let response = shell(&Look::default());
        assert_eq!(response.status(), StatusCode::OK);
        let html = std::str::from_utf8(response.body()).unwrap();
        assert!(html.contains("src=\"/console/operator.js\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
        let script = script();
        assert_eq!(
            script.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
