//! Short-lived chat tokens: HS256 JWTs signed with a secret kept in the state
//! directory (or configured). A token authorizes `/v1/chat/*` of its agents only, and
//! only sandboxes created under its user; never the sandbox, file, exec or token
//! endpoints.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where the generated secret lives in the state directory.
pub const SECRET_FILE: &str = "token-secret";

/// The longest lifetime a token may ask for.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, always `sandboxd`.
    pub iss: String,
    /// The user, when the token was made for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The agents it may chat with; all agents when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// A unique id.
    pub jti: String,
}

impl Claims {
    /// Whether the token may chat with `slug`.
    pub fn allows_agent(&self, slug: &str) -> bool {
        self.agents
            .as_ref()
            .is_none_or(|agents| agents.iter().any(|a| a == slug))
    }

    /// The owner recorded on sandboxes this token creates: its user, or the token
    /// itself when it names no user.
    pub fn owner(&self) -> String {
        match &self.sub {
            Some(user) => format!("user:{user}"),
            None => format!("token:{}", self.jti),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed token, or its signature does not match.
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("the token has expired; exchange a new one at POST /v1/tokens")]
    Expired,
}

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<secret>)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Signer {
    /// A signer with this secret.
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// Uses the configured secret, else reads or creates `<state_dir>/token-secret`.
    pub fn load_or_create(configured: Option<String>, state_dir: &Path) -> std::io::Result<Self> {
        if let Some(secret) = configured {
            return Ok(Self::new(secret.into_bytes()));
        }
        let path = state_dir.join(SECRET_FILE);
        let secret = crate::auth::read_or_create_secret(&path, || crate::auth::random_hex(32))?;
        Ok(Self::new(secret.into_bytes()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    /// A secret derived from this one for `purpose` (hex of an HMAC): stable across
    /// restarts, distinct per purpose, and useless for forging chat tokens.
    pub fn derive(&self, purpose: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"derive:");
        mac.update(purpose.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Issues a token.
    pub fn issue(
        &self,
        user: Option<String>,
        agents: Option<Vec<String>>,
        lifetime: Duration,
    ) -> (String, Claims) {
        let iat = now_secs();
        let claims = Claims {
            iss: "sandboxd".into(),
            sub: user,
            agents,
            iat,
            exp: iat + lifetime.as_secs(),
            jti: crate::names::new_id(""),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{signing_input}.{signature}"), claims)
    }

    /// Verifies a token's signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Invalid)?;
        if header["alg"] != "HS256" {
            return Err(TokenError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid)?;
        let mut mac = self.mac();
        mac.update(format!("{}.{payload}", token.split('.').next().unwrap_or("")).as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(TokenError::Invalid)?;
        if claims.exp <= now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Parses `30s`, `30m`, `1h`, `7d` (default unit: seconds for a bare number).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expiresIn {text:?} is not like 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("expiresIn {text:?} is not like 30m, 1h or 7d")),
    };
    let lifetime = Duration::from_secs(seconds);
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(format!(
            "expiresIn must be between 1s and 30d, not {text:?}"
        ));
    }
    Ok(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip_and_forgeries_fail() {
        let signer = Signer::new(b"secret".to_vec());
        let (token, claims) = signer.issue(
            Some("u1".into()),
            Some(vec!["demo".into()]),
            Duration::from_secs(60),
        );
        assert_eq!(signer.verify(&token), Ok(claims.clone()));
        assert!(claims.allows_agent("demo") && !claims.allows_agent("other"));
        assert_eq!(claims.owner(), "user:u1");
        // Another secret, a changed payload, a changed algorithm: all invalid.
        assert_eq!(
            Signer::new(b"other".to_vec()).verify(&token),
            Err(TokenError::Invalid)
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                agents: None,
                ..claims.clone()
            })
            .expect("json"),
        );
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(signer.verify(&forged), Err(TokenError::Invalid));
        let none_alg = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            signer.verify(&format!("{none_alg}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
        assert_eq!(signer.verify("garbage"), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let signer = Signer::new(b"s".to_vec());
        let (token, _) = signer.issue(None, None, Duration::ZERO);
        assert_eq!(signer.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_lifetime("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_lifetime("45"), Ok(Duration::from_secs(45)));
        assert!(parse_lifetime("1y").is_err());
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("31d").is_err());
        assert!(parse_lifetime("").is_err());
    }
}
