//! `ApiJson<T>`: the request-body extractor. Unlike axum's `Json` it does not insist on a
//! `Content-Type`, refuses an oversized body from its `Content-Length` before reading it,
//! and turns every rejection into an [`ApiError`] whose message says what is wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON request body of type `T`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::bad_request(format!("could not read the request body: {rejection}"))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A query string of type `T`, its rejections in the API's error shape.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| {
                ApiError::bad_request(format!("bad query string: {}", rejection.body_text()))
            })
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds the limit of {limit} bytes (--max-body-bytes)"),
    )
}

/// Parses a body, explaining syntax errors and wrong shapes differently.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; expected a JSON object",
        ));
    }
    // Every body is an object: serde reads a struct from an array too (`[null, null]`
    // would fill a definition's fields by position).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        // serde_json reports some wrong types (a bool where an enum's string goes) as
        // syntax errors: the body is only "not valid JSON" if it does not parse at all.
        let valid = || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match e.classify() {
            Category::Syntax | Category::Eof if !valid() => {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            }
            _ => ApiError::bad_request(format!("the request body has the wrong shape: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        command: String,
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = parse::<Body>(b"{\"command\": ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse::<Body>(b"{\"command\": 5}").unwrap_err();
        assert!(
            e.message.contains("wrong shape") && e.message.contains("string"),
            "{}",
            e.message
        );
        let e = parse::<Body>(b"{}").unwrap_err();
        assert!(
            e.message.contains("missing field `command`"),
            "{}",
            e.message
        );
        let e = parse::<Body>(b"{\"command\": \"x\", \"cmd\": 1}").unwrap_err();
        assert!(e.message.contains("unknown field `cmd`"), "{}", e.message);
        let e = parse::<Body>(b"  ").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        // An array is not an object, though serde would fill a struct from it.
        for body in [&b"[\"x\"]"[..], b" [null]", b"\"x\"", b"5"] {
            let e = parse::<Body>(body).unwrap_err();
            assert!(e.message.contains("must be a JSON object"), "{}", e.message);
        }

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Reply {
            #[serde(rename = "once")]
            Once,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Answer {
            reply: Reply,
        }
        let e = parse::<Answer>(b"{\"reply\": true}").unwrap_err();
        assert!(e.message.contains("wrong shape"), "{}", e.message);
    }
}
