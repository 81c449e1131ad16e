//! One request through the proxy: the token (and the address it comes from), the
//! route, the budget and the number of requests in flight are checked before anything
//! is sent upstream; the body then streams up within a size cap and a deadline, and the
//! reply streams back, metered.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;

use super::meter::Meter;
use super::{routes, ModelProxy, ProxyError};

/// Largest request body forwarded: the Messages API's own limit is 32 MB, so a larger
/// body could only be refused upstream.
pub const MAX_REQUEST_BYTES: u64 = 32 * 1024 * 1024;
/// Longest pause between two pieces of a request body. The CLI sends its body at
/// once; a sender that stalls this long is holding the connection, not sending.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a whole request body may take: generous for the largest body pushed to a
/// remote upstream over a slow uplink, finite for a sender dribbling bytes.
pub const BODY_DEADLINE: Duration = Duration::from_secs(120);

/// Headers not passed upstream: credentials are replaced, hop-by-hop ones dropped.
const DROPPED: &[&str] = &[
    "host",
    "x-api-key",
    "authorization",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    // Answered by this server; the client side of the upstream call does not wait
    // for a 100 Continue.
    "expect",
    // They would pick another organization or project of the daemon's OpenAI key.
    "openai-organization",
    "openai-project",
    "chatgpt-account-id",
];

/// Most of a refused request's body read (and dropped) before the refusal is sent.
const DISCARD_LIMIT: u64 = 1024 * 1024;
/// How long reading a refused request's body may take.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one request; every refusal is an Anthropic-shaped error.
pub async fn handle(
    proxy: Arc<ModelProxy>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let admitted = match admit(&proxy, peer, &parts) {
        Ok(admitted) => admitted,
        Err(e) => {
            discard(&parts, body).await;
            return e.into_response();
        }
    };
    forward(proxy, admitted, parts, body)
        .await
        .unwrap_or_else(ProxyError::into_response)
}

/// A request cleared to go upstream.
struct Admitted {
    sandbox: String,
    route: &'static routes::Route,
    in_flight: super::InFlight,
}

/// Everything checked before a byte of the body is read or anything is sent upstream.
fn admit(proxy: &Arc<ModelProxy>, peer: IpAddr, parts: &Parts) -> Result<Admitted, ProxyError> {
    let sandbox = proxy.authorize(&parts.headers, peer)?;
    let route = routes::find(&parts.method, parts.uri.path())
        .ok_or_else(|| ProxyError::NotAllowed(format!("{} {}", parts.method, parts.uri.path())))?;
    proxy.check_api(&sandbox, route)?;
    if let Some(beta) = routes::denied_beta(&parts.headers) {
        return Err(ProxyError::DeniedBeta(beta));
    }
    proxy.check_budget(&sandbox)?;
    let length = match parts.headers.get("content-length") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(ProxyError::BadLength)?,
        ),
    };
    if length.is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(ProxyError::TooLarge);
    }
    let in_flight = proxy.start_request(&sandbox)?;
    Ok(Admitted {
        sandbox,
        route,
        in_flight,
    })
}

/// Reads and drops a refused request's body when it is small and comes quickly, so
/// the refusal reaches the client: closing a socket with unread data resets it, and a
/// reset can destroy the reply before the client reads it. Larger or slower bodies are
/// not waited for (the connection is closed after the reply).
async fn discard(parts: &Parts, body: Incoming) {
    let announced = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_none_or(|n| n > DISCARD_LIMIT) {
        return;
    }
    let mut data = Body::new(body).into_data_stream();
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
        let mut read = 0u64;
        while let Some(Ok(chunk)) = data.next().await {
            read += chunk.len() as u64;
            if read > DISCARD_LIMIT {
                return;
            }
        }
    })
    .await;
}

async fn forward(
    proxy: Arc<ModelProxy>,
    admitted: Admitted,
    parts: Parts,
    body: Incoming,
) -> Result<Response<Body>, ProxyError> {
    let Admitted {
        sandbox,
        route,
        in_flight,
    } = admitted;
    let (base, key) = proxy.upstreams.of(route.api);
    let url = match parts.uri.query() {
        Some(query) => format!("{base}{}?{query}", route.path),
        None => format!("{base}{}", route.path),
    };
    let mut upstream = proxy.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    match (route.api, key) {
        (routes::Api::Anthropic, Some(key)) => upstream = upstream.header("x-api-key", key),
        (routes::Api::OpenAi, Some(key)) => upstream = upstream.bearer_auth(key),
        (_, None) => {}
    }
    let fault = Arc::new(Mutex::new(None));
    let body = reqwest::Body::wrap_stream(Bounded::new(Body::new(body), fault.clone()));
    proxy.count(&sandbox, |u| u.requests += 1);
    let response = match upstream.body(body).send().await {
        Ok(response) => response,
        Err(e) => {
            if let Some(fault) = super::lock(&fault).take() {
                return Err(fault);
            }
            tracing::warn!(%sandbox, error = %e, "model upstream unreachable");
            return Err(ProxyError::Upstream(e.to_string()));
        }
    };

    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let metered = route.metered;
    let stream = Metered {
        inner: Box::pin(response.bytes_stream()),
        meter: Meter::new(&content_type),
        proxy,
        sandbox,
        metered,
        _in_flight: in_flight,
    };
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The request body as a stream cut at [`MAX_REQUEST_BYTES`], after
/// [`BODY_IDLE_TIMEOUT`] without data, or at [`BODY_DEADLINE`]; the reason is left in
/// `fault` for the reply.
struct Bounded {
    data: axum::body::BodyDataStream,
    sent: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    idle: Pin<Box<tokio::time::Sleep>>,
    fault: Arc<Mutex<Option<ProxyError>>>,
    done: bool,
}

impl Bounded {
    fn new(body: Body, fault: Arc<Mutex<Option<ProxyError>>>) -> Self {
        Self {
            data: body.into_data_stream(),
            sent: 0,
            deadline: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
            idle: Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)),
            fault,
            done: false,
        }
    }

    fn fail(&mut self, e: ProxyError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let message = e.to_string();
        *super::lock(&self.fault) = Some(e);
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::other(message))))
    }
}

impl Stream for Bounded {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.data.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.sent += chunk.len() as u64;
                if this.sent > MAX_REQUEST_BYTES {
                    return this.fail(ProxyError::TooLarge);
                }
                let next = tokio::time::Instant::now() + BODY_IDLE_TIMEOUT;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(ProxyError::BodyRead(e.to_string())),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.fail(ProxyError::SlowBody(BODY_DEADLINE))
                } else if this.idle.as_mut().poll(cx).is_ready() {
                    this.fail(ProxyError::SlowBody(BODY_IDLE_TIMEOUT))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// The reply streaming back: metered as it passes, and holding the sandbox's
/// in-flight slot until it is delivered or dropped.
struct Metered {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    meter: Meter,
    proxy: Arc<ModelProxy>,
    sandbox: String,
    metered: bool,
    _in_flight: super::InFlight,
}

impl Metered {
    fn record(&self, tokens: Option<super::meter::Tokens>) {
        if let Some(tokens) = tokens.filter(|_| self.metered) {
            self.proxy
                .add_tokens(&self.sandbox, &tokens, self.meter.model());
        }
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let tokens = this.meter.feed(&chunk);
                this.record(tokens);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => {
                let tokens = this.meter.finish();
                this.record(tokens);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
