//! `getHost(port)`: a request whose Host is `<port>-<sandboxID>.<domain>` goes to that
//! port of that sandbox, as E2B's edge proxy routes it; the envd port (49983) is this
//! API itself. `<domain>` is this listener's own (what create reports); other Hosts
//! are not routed. Like E2B's public sandbox URLs, these requests carry no credentials
//! unless the sandbox was created with `allowPublicTraffic: false` (then its traffic
//! access token); only sandboxes created through the E2B API are served (a relay
//! sandbox's dev server is not a public URL).
//!
//! Every request is carried by a connection sandbox-init opens on the sandbox's own
//! loopback ([`crate::init_client::InitClient::dial`]), never by the container's
//! address: a server bound to localhost only (dev servers' default) is reached like
//! one bound to 0.0.0.0. HTTP/1.1 is spoken over it with hyper's client, streamed both
//! ways; a WebSocket (any `Upgrade`) is passed through: after the server's 101 the two
//! connections are spliced. The sandbox's server is not trusted: connecting and its
//! response's head have deadlines, its head is bounded by hyper, and a client that goes
//! away closes the dial.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use super::{auth, E2bState};
use crate::init_client::InitError;
use crate::sandbox::{Awake, Sandbox, Status};

/// envd's port, which the SDKs put in a sandbox's direct URL.
const ENVD_PORT: u16 = 49983;

/// How long the sandbox's server may take to send its response's head (a dev server
/// compiling on its first request is slow; one that never answers is cut off).
const HEAD_DEADLINE: Duration = Duration::from_secs(120);

/// The most bytes of a response's head hyper buffers from the sandbox's server.
const MAX_HEAD: usize = 256 * 1024;

/// Hop-by-hop headers, not forwarded either way (an upgrade's own are put back).
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

/// `<port>-<sandboxID>` of a Host header, when it has that form under `domain` (a
/// port on either is ignored; names compare without case).
fn parse_host<'a>(host: &'a str, domain: &str) -> Option<(u16, &'a str)> {
    let name = |h: &str| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned();
    let (first, rest) = host.split_once('.')?;
    if !name(rest).eq_ignore_ascii_case(&name(domain)) {
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
    let Some((port, id)) = parse_host(&host, &state.domain) else {
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
    if let Err((status, message)) = auth::port_allowed(&state, &sandbox, request.headers()) {
        return proxy_error(status, message.to_owned());
    }
    request.headers_mut().remove(auth::TRAFFIC_TOKEN_HEADER);
    if !matches!(sandbox.status(), Status::Active | Status::Paused) {
        return proxy_error(
            StatusCode::BAD_GATEWAY,
            format!("sandbox {} is not running", sandbox.sandbox_id),
        );
    }
    // Resumed if paused, and kept awake until the response's body (or the upgraded
    // connection) ends.
    let awake = match state.sandboxes.awake(&sandbox).await {
        Ok(guard) => guard,
        Err(e) => return proxy_error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    forward(&sandbox, port, host, request, awake)
        .await
        .unwrap_or_else(|message| proxy_error(StatusCode::BAD_GATEWAY, message))
}

/// Sends `request` to `port` over a dial and relays the answer; `Err` is a 502's
/// message.
async fn forward(
    sandbox: &Sandbox,
    port: u16,
    host: String,
    mut request: Request,
    awake: Awake,
) -> Result<Response, String> {
    let id = &sandbox.sandbox_id;
    let stream = match sandbox.init.dial(port).await {
        Ok(stream) => stream,
        Err(InitError::Busy(message)) => {
            return Ok(proxy_error(StatusCode::SERVICE_UNAVAILABLE, message))
        }
        Err(e @ InitError::Remote { .. }) => {
            return Err(format!(
                "nothing answers on port {port} of sandbox {id} ({e})"
            ))
        }
        Err(e) => return Err(format!("sandbox {id} cannot be reached: {e}")),
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake::<_, Body>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("port {port} of sandbox {id}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("a getHost connection ended: {e}");
        }
    });

    let upgrade = wants_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = hyper::Request::builder().method(parts.method).uri(path);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing.header(header::HOST, host);
    if upgrade {
        outgoing = outgoing.header(header::CONNECTION, "upgrade");
        if let Some(value) = parts.headers.get(header::UPGRADE) {
            outgoing = outgoing.header(header::UPGRADE, value);
        }
    }
    let outgoing = outgoing.body(body).map_err(|e| e.to_string())?;
    let mut upstream = tokio::time::timeout(HEAD_DEADLINE, sender.send_request(outgoing))
        .await
        .map_err(|_| {
            format!(
                "port {port} of sandbox {id} did not answer within {} s",
                HEAD_DEADLINE.as_secs()
            )
        })?
        .map_err(|e| format!("nothing answers on port {port} of sandbox {id} ({e})"))?;

    let switching = upstream.status() == StatusCode::SWITCHING_PROTOCOLS;
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        for name in [header::CONNECTION, header::UPGRADE] {
            if let Some(value) = upstream.headers().get(&name) {
                response = response.header(name, value);
            }
        }
        let server_upgrade = hyper::upgrade::on(&mut upstream);
        tokio::spawn(async move {
            let _awake = awake;
            let (client, server) = match tokio::join!(client_upgrade, server_upgrade) {
                (Ok(client), Ok(server)) => (client, server),
                (c, s) => {
                    tracing::debug!(
                        "a getHost upgrade failed: client {:?}, server {:?}",
                        c.err(),
                        s.err()
                    );
                    return;
                }
            };
            let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        return response.body(Body::empty()).map_err(|e| e.to_string());
    }
    let body = Body::new(upstream.into_body()).into_data_stream();
    response
        .body(Body::from_stream(futures_util::StreamExt::map(
            body,
            move |chunk| {
                let _ = (&awake, &sender);
                chunk
            },
        )))
        .map_err(|e| e.to_string())
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` and an
/// `Upgrade` header), which is then passed through.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_a_port_and_a_sandbox_under_the_domain() {
        let domain = "localhost:49983";
        let parse = |host| parse_host(host, domain);
        assert_eq!(
            parse("8000-sbx-abc.localhost:49983"),
            Some((8000, "sbx-abc"))
        );
        assert_eq!(parse("8000-sbx-abc.LocalHost"), Some((8000, "sbx-abc")));
        assert_eq!(parse("8000-sbx-abc.evil.example"), None);
        assert_eq!(parse("8000-sbx-abc.localhost.evil.example:49983"), None);
        assert_eq!(parse("8000-sbx-abc.sub.localhost"), None);
        assert_eq!(parse("localhost:49983"), None);
        assert_eq!(parse("127.0.0.1:49983"), None);
        assert_eq!(parse("x-sbx.localhost"), None);
        assert_eq!(parse("0-sbx.localhost"), None);
        assert_eq!(parse("99999-sbx.localhost"), None);
        assert_eq!(parse("8000-.localhost"), None);
    }
}
