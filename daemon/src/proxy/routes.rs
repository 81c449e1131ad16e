//! The model calls a sandbox may make: everything else is refused at the proxy and
//! never reaches the upstream, where the daemon's key would give it the account's full
//! authority (files, batches, the organization's admin API).

use axum::http::Method;

/// One allowed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path, matched exactly (no normalisation: `/v1/messages/../files` is not
    /// `/v1/messages`), and the path forwarded upstream.
    pub path: &'static str,
    /// Whether its replies carry `usage` to meter and bill.
    pub metered: bool,
}

/// The whole allow-list. The Claude Code CLI (2.1.x) calls `POST /v1/messages?beta=true`
/// for every model turn and `POST /v1/messages/count_tokens?beta=true` to size context;
/// another runtime (the Codex CLI's `POST /v1/responses`) is one more entry here.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::POST,
        path: "/v1/messages",
        metered: true,
    },
    Route {
        method: Method::POST,
        path: "/v1/messages/count_tokens",
        metered: false,
    },
];

/// The allowed route for a request's method and path (without the query), if any.
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_calls_match_and_paths_are_not_normalised() {
        assert!(find(&Method::POST, "/v1/messages").is_some_and(|r| r.metered));
        assert!(find(&Method::POST, "/v1/messages/count_tokens").is_some());
        for (method, path) in [
            (Method::GET, "/v1/messages"),
            (Method::DELETE, "/v1/messages"),
            (Method::POST, "/v1/messages/batches"),
            (Method::GET, "/v1/files"),
            (Method::POST, "/v1/messages/"),
            (Method::POST, "//v1/messages"),
            (Method::POST, "/v1/messages/count_tokens/../../files"),
            (Method::POST, "/v1/%6Dessages"),
            (Method::POST, "/v1/organizations/me"),
        ] {
            assert_eq!(find(&method, path), None, "{method} {path}");
        }
    }
}
