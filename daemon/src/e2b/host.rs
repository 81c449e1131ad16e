//! `getHost(port)`: a request whose Host is `<port>-<sandboxID>.<domain>` goes to that
//! port of that sandbox (its address on the sandbox network), as E2B's edge proxy
//! routes it; the envd port (49983) is this API itself. Like E2B's public sandbox
//! URLs, these requests carry no credentials: the listener's address is the boundary.
//! A server must listen on the sandbox's network interface (0.0.0.0), not only on
//! localhost. Plain HTTP, streamed both ways; no WebSocket upgrades yet.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::E2bState;
use crate::sandbox::Status;

/// envd's port, which the SDKs put in a sandbox's direct URL.
const ENVD_PORT: u16 = 49983;

/// Hop-by-hop headers, not forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// `<port>-<sandboxID>` of a Host header, when it has that form.
fn parse_host(host: &str) -> Option<(u16, &str)> {
    let first = host.split('.').next()?;
    if first.len() == host.len() {
        return None;
    }
    let (port, id) = first.split_once('-')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!id.is_empty()).then_some((port, id))
}

fn proxy_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({"code": status.as_u16(), "message": message});
    (status, axum::Json(body)).into_response()
}

/// Routes a request by its Host header (see the module); others go on.
pub async fn route(State(state): State<E2bState>, mut request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Some((port, id)) = parse_host(&host) else {
        return next.run(request).await;
    };
    let Some(sandbox) = state.sandboxes.peek(id) else {
        return next.run(request).await;
    };
    if port == ENVD_PORT {
        // The direct envd URL: the id comes from the Host.
        if let Ok(value) = HeaderValue::from_str(&sandbox.sandbox_id) {
            request.headers_mut().insert("e2b-sandbox-id", value);
        }
        return next.run(request).await;
    }
    if !matches!(sandbox.status(), Status::Active | Status::Paused) {
        return proxy_error(
            StatusCode::BAD_GATEWAY,
            format!("sandbox {} is not running", sandbox.sandbox_id),
        );
    }
    // Resumed if paused, and kept awake until the response's body is sent.
    let awake = match state.sandboxes.awake(&sandbox).await {
        Ok(guard) => guard,
        Err(e) => return proxy_error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let address = match state.sandboxes.address(&sandbox).await {
        Ok(a) => a,
        Err(e) => return proxy_error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("http://{address}:{port}{path}");
    let (parts, body) = request.into_parts();
    let mut forward = state.http.request(parts.method, &url);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    forward = forward.header(header::HOST, host);
    let forward = forward.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let upstream = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            return proxy_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "nothing answers on port {port} of sandbox {} ({}); a server must listen \
                     on 0.0.0.0",
                    sandbox.sandbox_id,
                    e.without_url()
                ),
            )
        }
    };
    let mut response = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            if let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) {
                response = response.header(name, value.as_bytes());
            }
        }
    }
    response
        .body(Body::from_stream(futures_util::StreamExt::map(
            upstream.bytes_stream(),
            move |chunk| {
                let _ = &awake;
                chunk
            },
        )))
        .unwrap_or_else(|e| proxy_error(StatusCode::BAD_GATEWAY, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_a_port_and_a_sandbox() {
        assert_eq!(
            parse_host("8000-sbx-abc.localhost:49983"),
            Some((8000, "sbx-abc"))
        );
        assert_eq!(parse_host("localhost:49983"), None);
        assert_eq!(parse_host("127.0.0.1:49983"), None);
        assert_eq!(parse_host("x-sbx.localhost"), None);
        assert_eq!(parse_host("0-sbx.localhost"), None);
        assert_eq!(parse_host("99999-sbx.localhost"), None);
        assert_eq!(parse_host("8000-.localhost"), None);
    }
}
