//! The Connect protocol (connectrpc.com) with the JSON codec, which both `e2b` SDKs
//! use: a unary call is a POST of `application/json` answered with JSON (or an error
//! status with `{code, message}`); a server stream is a POST of one enveloped message
//! (`application/connect+json`: a flag byte, a big-endian u32 length, the JSON),
//! answered with enveloped messages and a final end-of-stream envelope (flag 2)
//! carrying `{}` or `{"error": {code, message}}`. Works over HTTP/1.1.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

/// The envelope flag of the end-of-stream message.
const END_STREAM: u8 = 2;
/// The envelope flag of a compressed message (never negotiated here).
const COMPRESSED: u8 = 1;

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is unusable.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// No such process or path.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// The account may not.
    PermissionDenied,
    /// A bound was reached.
    ResourceExhausted,
    /// Not implemented by sandboxd.
    Unimplemented,
    /// The daemon failed.
    Internal,
    /// The sandbox is not reachable.
    Unavailable,
    /// Missing or wrong access token.
    Unauthenticated,
}

impl Code {
    /// Its wire name.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error with this code.
    fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A failed RPC.
#[derive(Debug, Clone)]
pub struct RpcError {
    /// Its code.
    pub code: Code,
    /// A message for a person.
    pub message: String,
}

impl RpcError {
    /// An error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A request the client got wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    fn json(&self) -> serde_json::Value {
        if self.code == Code::Internal {
            tracing::error!("e2b envd: {}", self.message);
        }
        serde_json::json!({"code": self.code.name(), "message": self.message})
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        (self.code.status(), axum::Json(self.json())).into_response()
    }
}

impl From<crate::sandbox::SandboxError> for RpcError {
    fn from(e: crate::sandbox::SandboxError) -> Self {
        use crate::init_client::InitError;
        use crate::sandbox::SandboxError as E;
        use sandbox_init::protocol::ErrorKind as K;
        let code = match &e {
            E::Invalid(_) | E::BadPath(_) => Code::InvalidArgument,
            E::NotFound(_) | E::NotActive { .. } => Code::Unavailable,
            E::DiskFull { .. } | E::QuotaExceeded(_) => Code::ResourceExhausted,
            E::Init(InitError::Remote { kind, .. }) => match kind {
                K::NotFound => Code::NotFound,
                K::AlreadyExists => Code::AlreadyExists,
                K::PermissionDenied => Code::PermissionDenied,
                K::NotADirectory | K::IsADirectory | K::InvalidInput => Code::InvalidArgument,
                K::TooLarge | K::NoSpace => Code::ResourceExhausted,
                K::Protocol | K::Io => Code::Internal,
            },
            E::Init(InitError::Closed(_) | InitError::Unreachable(_)) => Code::Unavailable,
            _ => Code::Internal,
        };
        Self::new(code, e.to_string())
    }
}

impl From<crate::init_client::InitError> for RpcError {
    fn from(e: crate::init_client::InitError) -> Self {
        crate::sandbox::SandboxError::Init(e).into()
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Decodes a unary request (JSON only: the binary codec is refused by name).
pub fn unary_request<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, RpcError> {
    let kind = content_type(headers);
    if !kind.starts_with("application/json") {
        return Err(RpcError::new(
            Code::Unimplemented,
            format!("content type {kind:?}: sandboxd speaks Connect with the JSON codec only"),
        ));
    }
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| RpcError::invalid(format!("request: {e}")))
}

/// A unary response.
pub fn unary_response<T: Serialize>(result: Result<T, RpcError>) -> Response {
    match result {
        Ok(message) => axum::Json(message).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Decodes the single enveloped message of a server-stream request.
pub fn stream_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, RpcError> {
    let kind = content_type(headers);
    if kind != "application/connect+json" {
        return Err(RpcError::new(
            Code::Unimplemented,
            format!("content type {kind:?}: sandboxd speaks Connect with the JSON codec only"),
        ));
    }
    if body.len() < 5 {
        return Err(RpcError::invalid("the request has no enveloped message"));
    }
    let flags = body[0];
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if flags & COMPRESSED != 0 {
        return Err(RpcError::invalid("compressed messages are not accepted"));
    }
    let message = body
        .get(5..5 + len)
        .ok_or_else(|| RpcError::invalid("the enveloped message is cut short"))?;
    serde_json::from_slice(message).map_err(|e| RpcError::invalid(format!("request: {e}")))
}

/// Frames one message of a stream.
pub fn envelope(flags: u8, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + json.len());
    out.push(flags);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.into()
}

/// The sending half of a server stream: messages, then exactly one end.
#[derive(Debug)]
pub struct StreamSender(mpsc::Sender<Bytes>);

impl StreamSender {
    /// Sends a message; false once the client has gone.
    pub async fn send<T: Serialize>(&self, message: &T) -> bool {
        let json = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
        self.0.send(envelope(0, &json)).await.is_ok()
    }

    /// Ends the stream, with an error or without.
    pub async fn end(self, error: Option<RpcError>) {
        let body = match error {
            None => serde_json::json!({}),
            Some(e) => serde_json::json!({"error": e.json()}),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let _ = self.0.send(envelope(END_STREAM, &json)).await;
    }

    /// Resolves once the client has gone (the response body was dropped).
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// A streaming response and the sender feeding it. The body holds few messages at a
/// time: a slow client slows the sender down instead of growing a buffer.
pub fn stream_response() -> (StreamSender, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    let response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/connect+json")],
        Body::from_stream(body),
    )
        .into_response();
    (StreamSender(tx), response)
}

/// A stream that fails at once.
pub fn stream_error(error: RpcError) -> Response {
    let body = serde_json::json!({"error": error.json()});
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/connect+json")],
        envelope(END_STREAM, &json),
    )
        .into_response()
}

/// The `Connect-Timeout-Ms` deadline of a call, when it has one.
pub fn timeout_ms(headers: &HeaderMap) -> Result<Option<u64>, RpcError> {
    match headers.get("connect-timeout-ms") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Some)
            .ok_or_else(|| RpcError::invalid("Connect-Timeout-Ms: not a positive integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_requests_are_unwrapped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/connect+json".parse().expect("header"),
        );
        let body = envelope(0, br#"{"a":1}"#);
        let v: serde_json::Value = stream_request(&headers, &body).expect("decodes");
        assert_eq!(v, serde_json::json!({"a": 1}));
        assert!(stream_request::<serde_json::Value>(&headers, &body[..6]).is_err());
        assert!(stream_request::<serde_json::Value>(&headers, &envelope(1, b"{}")).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "application/connect+proto".parse().expect("header"),
        );
        let e = stream_request::<serde_json::Value>(&headers, &body).expect_err("refused");
        assert_eq!(e.code, Code::Unimplemented);
    }
}
