//! The model proxy: the only way sandboxes reach the model.
//!
//! Each sandbox gets a token of its own; the proxy checks it, forwards the request to
//! the upstream (the Anthropic API, or any compatible server such as the scripted
//! model) with the daemon's real key, streams the response back unbuffered, and counts
//! each sandbox's tokens from the response as it passes. Sandboxes never hold the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use serde::Serialize;

/// Largest request body forwarded (a long conversation with images).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// What one sandbox consumed through the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyUsage {
    /// Requests forwarded.
    pub requests: u64,
    /// Input tokens reported by the upstream (including cache reads and writes).
    pub input_tokens: u64,
    /// Output tokens reported by the upstream.
    pub output_tokens: u64,
}

/// The proxy's state.
#[derive(Debug)]
pub struct ModelProxy {
    upstream: String,
    api_key: Option<String>,
    client: reqwest::Client,
    /// token -> sandbox id
    tokens: Mutex<HashMap<String, String>>,
    usage: Mutex<HashMap<String, ProxyUsage>>,
    base_url: OnceLock<String>,
    /// Where each sandbox's consumption is kept across restarts.
    store: OnceLock<Arc<crate::store::Store>>,
}

impl ModelProxy {
    /// A proxy to `upstream`, authenticating with `api_key` when given.
    pub fn new(upstream: &str, api_key: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            api_key,
            client: reqwest::Client::new(),
            tokens: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            base_url: OnceLock::new(),
            store: OnceLock::new(),
        })
    }

    /// Keeps consumption in `store` from now on.
    pub fn persist_to(&self, store: Arc<crate::store::Store>) {
        let _ = self.store.set(store);
    }

    /// Puts back what a restored sandbox had consumed.
    pub fn restore_usage(&self, sandbox_id: &str, usage: ProxyUsage) {
        lock(&self.usage).insert(sandbox_id.to_owned(), usage);
    }

    /// The URL sandboxes use, once the proxy listens.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.get().map(String::as_str)
    }

    /// Issues the token of a sandbox.
    pub fn register(&self, sandbox_id: &str) -> String {
        let token = format!("sbxtok_{}", crate::sandbox::new_id(""));
        lock(&self.tokens).insert(token.clone(), sandbox_id.to_owned());
        token
    }

    /// Accepts a token issued before (a sandbox restored from the store).
    pub fn register_token(&self, sandbox_id: &str, token: &str) {
        lock(&self.tokens).insert(token.to_owned(), sandbox_id.to_owned());
    }

    /// Revokes every token of a sandbox.
    pub fn unregister(&self, sandbox_id: &str) {
        lock(&self.tokens).retain(|_, id| id != sandbox_id);
        lock(&self.usage).remove(sandbox_id);
    }

    /// What a sandbox consumed.
    pub fn usage(&self, sandbox_id: &str) -> ProxyUsage {
        lock(&self.usage)
            .get(sandbox_id)
            .copied()
            .unwrap_or_default()
    }

    /// What all sandboxes consumed (including sandboxes since deleted, as far as
    /// their counters were kept).
    pub fn totals(&self) -> ProxyUsage {
        lock(&self.usage)
            .values()
            .fold(ProxyUsage::default(), |mut sum, u| {
                sum.requests += u.requests;
                sum.input_tokens += u.input_tokens;
                sum.output_tokens += u.output_tokens;
                sum
            })
    }

    /// Serves on `listener` until `shutdown`; `advertised` is the URL sandboxes use.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        advertised: String,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        let _ = self.base_url.set(advertised);
        let app = Router::new().fallback(forward).with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    fn sandbox_of(&self, headers: &HeaderMap) -> Option<String> {
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })?;
        let tokens = lock(&self.tokens);
        tokens
            .iter()
            .find(|(token, _)| {
                crate::auth::constant_time_eq(token.as_bytes(), presented.as_bytes())
            })
            .map(|(_, id)| id.clone())
    }

    fn count(&self, sandbox_id: &str, f: impl FnOnce(&mut ProxyUsage)) {
        let mut usage = lock(&self.usage);
        let entry = usage.entry(sandbox_id.to_owned()).or_default();
        f(entry);
        // Written under the lock, so the store never goes back to an older count.
        if let (Some(store), Ok(text)) = (self.store.get(), serde_json::to_string(entry)) {
            if let Err(e) = store.set_model_usage(sandbox_id, &text) {
                tracing::warn!(sandbox = %sandbox_id, "model usage not stored: {e}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters and maps are updated in single statements: a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "type": "error",
        "error": { "type": kind, "message": message }
    });
    (status, axum::Json(body)).into_response()
}

/// Headers not passed upstream: credentials are replaced, hop-by-hop ones dropped.
const DROPPED: &[&str] = &[
    "host",
    "x-api-key",
    "authorization",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
];

async fn forward(State(proxy): State<Arc<ModelProxy>>, req: Request) -> Response {
    let Some(sandbox) = proxy.sandbox_of(req.headers()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "sandboxd model proxy: unknown or revoked sandbox token",
        );
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "sandboxd model proxy: request body too large",
            )
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", proxy.upstream);
    let mut upstream = proxy.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    if let Some(key) = &proxy.api_key {
        upstream = upstream.header("x-api-key", key);
    }
    proxy.count(&sandbox, |u| u.requests += 1);
    let response = match upstream.body(body).send().await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(%sandbox, error = %e, "model upstream unreachable");
            return error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                &format!("sandboxd model proxy: the model upstream is unreachable ({e})"),
            );
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.insert(n, v);
        }
    }
    let mut meter = Meter::default();
    let stream = response.bytes_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            if let Some((input, output)) = meter.feed(bytes) {
                proxy.count(&sandbox, |u| {
                    u.input_tokens += input;
                    u.output_tokens += output;
                });
            }
        }
        chunk.map_err(std::io::Error::other)
    });
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Finds `usage` objects in a response as it streams by (SSE events or one JSON body)
/// and reports token counts as they become known.
#[derive(Debug, Default)]
struct Meter {
    pending: Vec<u8>,
}

impl Meter {
    /// Feeds bytes; returns new (input, output) tokens seen in complete lines.
    fn feed(&mut self, bytes: &[u8]) -> Option<(u64, u64)> {
        self.pending.extend_from_slice(bytes);
        let mut total = (0u64, 0u64);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line);
            let json = text
                .trim()
                .strip_prefix("data:")
                .unwrap_or(text.trim())
                .trim();
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
                // message_start carries the input; message_delta the final output
                // count (cumulative); a non-streamed message carries both.
                let (usage, input, output) = match value.get("type").and_then(|t| t.as_str()) {
                    Some("message_start") => (value.pointer("/message/usage"), true, false),
                    Some("message_delta") => (value.get("usage"), false, true),
                    Some("message") => (value.get("usage"), true, true),
                    _ => (None, false, false),
                };
                if let Some(u) = usage {
                    let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                    if input {
                        total.0 += n("input_tokens")
                            + n("cache_creation_input_tokens")
                            + n("cache_read_input_tokens");
                    }
                    if output {
                        total.1 += n("output_tokens");
                    }
                }
            }
        }
        if self.pending.len() > 1 << 20 {
            // A huge single line (a non-streamed body): parse it at the end instead.
            return None;
        }
        (total != (0, 0)).then_some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_reads_usage_from_sse_split_anywhere() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n\
                      event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n";
        let mut meter = Meter::default();
        let mut sum = (0, 0);
        for piece in stream.as_bytes().chunks(7) {
            if let Some((i, o)) = meter.feed(piece) {
                sum.0 += i;
                sum.1 += o;
            }
        }
        assert_eq!(sum, (15, 7));
    }

    #[test]
    fn tokens_map_to_sandboxes_and_are_revoked() {
        let proxy = ModelProxy::new("http://upstream", None);
        let token = proxy.register("sb_1");
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_str(&token).expect("header"));
        assert_eq!(proxy.sandbox_of(&headers).as_deref(), Some("sb_1"));
        proxy.unregister("sb_1");
        assert_eq!(proxy.sandbox_of(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static("sbxtok_guess"));
        assert_eq!(proxy.sandbox_of(&headers), None);
    }
}
