//! The model calls a sandbox may make: everything else is refused at the proxy and
//! never reaches the upstream, where the daemon's key would give it the account's full
//! authority (files, batches, the organization's admin API).

use axum::http::Method;

/// The API a route belongs to: which upstream it goes to and how the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The Anthropic Messages API (`--model-upstream`, `x-api-key`).
    Anthropic,
    /// The OpenAI Responses API (`--openai-upstream`, `Authorization: Bearer`).
    OpenAi,
}

impl Api {
    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Api::Anthropic => "Anthropic Messages",
            Api::OpenAi => "OpenAI Responses",
        }
    }
}

/// One allowed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its API.
    pub api: Api,
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
/// the Codex CLI (0.171) calls `POST /v1/responses` (streamed) for every model turn.
pub const ROUTES: &[Route] = &[
    Route {
        api: Api::Anthropic,
        method: Method::POST,
        path: "/v1/messages",
        metered: true,
    },
    Route {
        api: Api::Anthropic,
        method: Method::POST,
        path: "/v1/messages/count_tokens",
        metered: false,
    },
    Route {
        api: Api::OpenAi,
        method: Method::POST,
        path: "/v1/responses",
        metered: true,
    },
];

/// `anthropic-beta` features refused on every route: each reaches beyond the model
/// call itself with the daemon's key — the account's uploaded files (`files-api`),
/// servers the upstream connects to (`mcp-client`, `web-fetch`), code run upstream
/// (`code-execution`, `skills`) — and so around the sandbox's own files and egress
/// policy. The CLI sends none of them (2.1.x sends `claude-code`, `interleaved-thinking`,
/// `context-management`, `thinking-token-count`, `advanced-tool-use`,
/// `thinking-display-updates`).
const DENIED_BETAS: &[&str] = &[
    "files-api",
    "mcp-client",
    "web-fetch",
    "code-execution",
    "skills",
];

/// The first refused beta feature a request asks for, if any (the header may be given
/// several times, each a comma-separated list).
pub fn denied_beta(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|b| b.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .find(|beta| DENIED_BETAS.iter().any(|d| beta.starts_with(d)))
}

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
        assert!(find(&Method::POST, "/v1/responses").is_some_and(|r| r.api == Api::OpenAi));
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
            (Method::GET, "/v1/responses"),
            (Method::GET, "/v1/responses/resp_1"),
            (Method::POST, "/v1/chat/completions"),
            (Method::POST, "/v1/files"),
        ] {
            assert_eq!(find(&method, path), None, "{method} {path}");
        }
    }

    #[test]
    fn betas_that_reach_beyond_the_model_call_are_refused() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14"
                .parse()
                .expect("header"),
        );
        assert_eq!(denied_beta(&headers), None);
        headers.append(
            "anthropic-beta",
            "context-management-2025-06-27, Files-API-2025-04-14"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            denied_beta(&headers).as_deref(),
            Some("files-api-2025-04-14")
        );
    }
}
