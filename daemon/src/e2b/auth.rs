//! Who may call: the daemon's API key on the control plane (`X-API-Key`, what the SDKs
//! send from `E2B_API_KEY`), each sandbox's access token on its envd API
//! (`X-Access-Token`), and the account an envd call acts as (`Authorization: Basic
//! <user>:`, or the `username` query of `/files`).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{ControlError, E2bState};
use crate::auth::constant_time_eq;
use crate::sandbox::{Sandbox, ROOT, USER};

/// Refuses a control-plane call without the daemon's API key.
pub async fn require_api_key(
    State(state): State<E2bState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if presented.is_empty() {
        return ControlError::new(
            StatusCode::UNAUTHORIZED,
            "missing X-API-Key: set E2B_API_KEY to the daemon's API key",
        )
        .into_response();
    }
    if !state.api_key.matches(presented) {
        return ControlError::new(StatusCode::UNAUTHORIZED, "invalid API key").into_response();
    }
    next.run(request).await
}

/// A sandbox's envd access token: derived from the daemon's secret and the sandbox's
/// id, so it needs no storage and survives restarts.
pub fn access_token(state: &E2bState, sandbox: &Sandbox) -> String {
    state.signer.derive(&format!("e2b-envd:{}", sandbox.id))
}

/// Whether the request carries the sandbox's access token (compared in constant time).
pub fn token_matches(state: &E2bState, sandbox: &Sandbox, headers: &HeaderMap) -> bool {
    let presented = headers
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = access_token(state, sandbox);
    !presented.is_empty() && constant_time_eq(expected.as_bytes(), presented.as_bytes())
}

/// The account an RPC acts as: `Authorization: Basic base64("<user>:")`, else `user`.
/// Only `user` and `root` exist in a sandbox.
pub fn rpc_user(headers: &HeaderMap) -> Result<&'static str, String> {
    let Some(value) = headers.get("authorization") else {
        return Ok(USER);
    };
    let text = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or("Authorization: expected Basic credentials")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "Authorization: not base64".to_owned())?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Authorization: not UTF-8".to_owned())?;
    let name = decoded.split_once(':').map_or(decoded.as_str(), |(n, _)| n);
    user_named(name)
}

/// `user` or `root` by name (empty: `user`).
pub fn user_named(name: &str) -> Result<&'static str, String> {
    match name {
        "" | USER => Ok(USER),
        ROOT => Ok(ROOT),
        other => Err(format!(
            "user {:?} does not exist in the sandbox (use \"user\" or \"root\")",
            other.chars().take(64).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_names_the_user() {
        let mut headers = HeaderMap::new();
        assert_eq!(rpc_user(&headers), Ok(USER));
        headers.insert("authorization", "Basic cm9vdDo=".parse().expect("header"));
        assert_eq!(rpc_user(&headers), Ok(ROOT));
        headers.insert("authorization", "Basic dXNlcjo=".parse().expect("header"));
        assert_eq!(rpc_user(&headers), Ok(USER));
        headers.insert("authorization", "Basic Ym9iOg==".parse().expect("header"));
        assert!(rpc_user(&headers).is_err());
        headers.insert("authorization", "Bearer x".parse().expect("header"));
        assert!(rpc_user(&headers).is_err());
    }
}
