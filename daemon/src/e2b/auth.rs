//! Who may call: the daemon's API key on the control plane (`X-API-Key`, what the SDKs
//! send from `E2B_API_KEY`), each sandbox's access token on its envd API
//! (`X-Access-Token`), the traffic access token on getHost ports of a sandbox created
//! with `allowPublicTraffic: false` (`e2b-traffic-access-token`), and the account an
//! envd call acts as (`Authorization: Basic <user>:`, or the `username` query of
//! `/files`).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::envd::connect::{Code, RpcError};
use super::{ControlError, E2bState};
use crate::auth::constant_time_eq;
use crate::names::{ROOT, USER};
use crate::sandbox::{PortAccess, Sandbox};

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

/// A sandbox's traffic access token, when its getHost ports ask for one: derived like
/// the envd token, under its own label.
pub fn traffic_token(state: &E2bState, sandbox: &Sandbox) -> Option<String> {
    (sandbox.attributes.port_access == Some(PortAccess::Token))
        .then(|| state.signer.derive(&format!("e2b-traffic:{}", sandbox.id)))
}

/// Whether a getHost request may reach the sandbox's ports: `Err` says why not.
pub fn port_allowed(
    state: &E2bState,
    sandbox: &Sandbox,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    match sandbox.attributes.port_access {
        None => Err((
            StatusCode::NOT_FOUND,
            "only sandboxes created through the E2B API are served by getHost",
        )),
        Some(PortAccess::Public) => Ok(()),
        Some(PortAccess::Token) => {
            let presented = headers
                .get(TRAFFIC_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = traffic_token(state, sandbox).unwrap_or_default();
            if !presented.is_empty() && constant_time_eq(expected.as_bytes(), presented.as_bytes())
            {
                Ok(())
            } else {
                Err((
                    StatusCode::FORBIDDEN,
                    "this sandbox's ports need its traffic access token \
                     (the e2b-traffic-access-token header)",
                ))
            }
        }
    }
}

/// The header a getHost request carries a traffic access token in.
pub const TRAFFIC_TOKEN_HEADER: &str = "e2b-traffic-access-token";

/// Whether the request carries the sandbox's access token (compared in constant time).
pub fn token_matches(state: &E2bState, sandbox: &Sandbox, headers: &HeaderMap) -> bool {
    let presented = headers
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = access_token(state, sandbox);
    !presented.is_empty() && constant_time_eq(expected.as_bytes(), presented.as_bytes())
}

/// Why a signed file URL is refused: envd's messages, which the SDKs' tests compare.
pub const INVALID_SIGNATURE: &str = "invalid signature";
/// An expired signature (checked after the signature matched).
pub const EXPIRED_SIGNATURE: &str = "signature is already expired";
/// A `signature_expiration` that is not a number.
pub const INVALID_EXPIRATION: &str = "invalid signature_expiration";

/// The sandbox whose token signed a file URL (a `GET`/`POST /files` that carries no
/// headers: the signature alone says which sandbox it is for), checked in envd's
/// order: the signature must match some running sandbox's (compared in constant
/// time), then its expiration must not have passed.
///
/// The signature is `v1_` + base64(sha256("<path>:<read|write>:<username>:<token>
/// [:<expiration>]")) without padding, as the SDKs compute it.
pub fn signed_sandbox(
    state: &E2bState,
    operation: &str,
    query: &std::collections::HashMap<String, String>,
) -> Result<std::sync::Arc<Sandbox>, &'static str> {
    use sha2::{Digest, Sha256};
    let signature = query.get("signature").map(String::as_str).unwrap_or("");
    if signature.is_empty() {
        return Err("missing signature");
    }
    let expiration = match query.get("signature_expiration") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| INVALID_EXPIRATION)?),
    };
    let path = query.get("path").map(String::as_str).unwrap_or("");
    let user = query.get("username").map(String::as_str).unwrap_or("");
    let mut found = None;
    for view in state.sandboxes.list() {
        let Some(sandbox) = state.sandboxes.peek(&view.id) else {
            continue;
        };
        if !matches!(
            sandbox.status(),
            crate::sandbox::Status::Active | crate::sandbox::Status::Paused
        ) {
            continue;
        }
        let token = access_token(state, &sandbox);
        let mut raw = format!("{path}:{operation}:{user}:{token}");
        if let Some(exp) = expiration {
            raw.push_str(&format!(":{exp}"));
        }
        let expected = format!(
            "v1_{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(raw))
        );
        if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            found = Some(sandbox);
        }
    }
    let sandbox = found.ok_or(INVALID_SIGNATURE)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if expiration.is_some_and(|exp| exp < now) {
        return Err(EXPIRED_SIGNATURE);
    }
    Ok(sandbox)
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

/// The account an envd RPC acts as ([`rpc_user`]), as the Connect error envd answers.
pub fn rpc_account(headers: &HeaderMap) -> Result<&'static str, RpcError> {
    rpc_user(headers).map_err(RpcError::invalid)
}

/// The account a `/files` call acts as (its `username` query; absent: `user`); an
/// unknown one is envd's 401.
pub fn files_account(username: Option<&str>) -> Result<&'static str, RpcError> {
    user_named(username.unwrap_or("")).map_err(|e| RpcError::new(Code::Unauthenticated, e))
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
