//! The model proxy: the only way sandboxes reach the model.
//!
//! Each sandbox gets a token of its own, valid only from the sandbox's own address on
//! the sandbox network. The proxy forwards only the model calls the runtimes make
//! ([`routes`]) to their upstream (the Anthropic API for Claude Code, the OpenAI
//! Responses API for Codex, or any compatible server such as the scripted model) with
//! the daemon's real key for that upstream, streams request bodies up and
//! replies back unbuffered, and meters each sandbox's tokens and their cost from the
//! replies ([`meter`]), refusing further calls once a sandbox has spent its budget.
//! Connections and requests are bounded per sandbox and in time ([`conn`],
//! [`forward`]). Sandboxes never hold the key.

mod conn;
mod forward;
mod meter;
mod routes;
mod turns;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

pub use conn::{connection_budget, RESERVED_PER_SANDBOX};
pub use routes::Api;
pub use turns::TurnBudget;

/// What a sandbox's agent is lent at the proxy (see [`ModelProxy::lend`]).
#[derive(Debug, Clone, Copy)]
struct Lent {
    budget_usd: Option<f64>,
    api: Api,
}

/// Requests one sandbox may have in flight at once; more are answered 429 at once.
/// The CLI runs its main loop and a few parallel subagents; each request holds an
/// upstream connection for as long as the model streams.
pub const PER_SANDBOX_IN_FLIGHT: usize = 8;
/// How long connecting to the upstream may take.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one sandbox consumed through the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyUsage {
    /// Requests forwarded.
    pub requests: u64,
    /// Input tokens reported by the upstream (including cache reads and writes).
    pub input_tokens: u64,
    /// Output tokens reported by the upstream.
    pub output_tokens: u64,
    /// What those tokens cost at Anthropic's list prices, in USD.
    pub cost_usd: f64,
}

/// Why the proxy refused or failed a request; each is an Anthropic-shaped error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No token, or one that is unknown or revoked.
    #[error("unknown or revoked sandbox token")]
    UnknownToken,
    /// A sandbox's token presented from another address.
    #[error("this token belongs to another sandbox")]
    ForeignToken,
    /// A method and path the runtimes do not need.
    #[error("{0} is not a model call sandboxes may make")]
    NotAllowed(String),
    /// An `anthropic-beta` feature that reaches beyond the model call.
    #[error(
        "the beta feature {0} reaches beyond the model call and is not available to sandboxes"
    )]
    DeniedBeta(String),
    /// The sandbox has spent its budget.
    #[error("this sandbox has spent its model budget (${spent:.4} of ${budget:.4}); the daemon's --max-sandbox-budget-usd or the agent's maxSandboxBudgetUsd, or the chat call's options.maxSandboxBudgetUsd")]
    OverBudget {
        /// What it spent.
        spent: f64,
        /// Its budget.
        budget: f64,
    },
    /// The sandbox's running turns have spent their budgets.
    #[error("the running turns of this sandbox have spent their budget (${spent:.4} of ${budget:.4}, maxBudgetUsd)")]
    TurnOverBudget {
        /// What the sandbox spent since the earliest of them began.
        spent: f64,
        /// Their budgets summed.
        budget: f64,
    },
    /// Too many requests of this sandbox at once.
    #[error("more than {PER_SANDBOX_IN_FLIGHT} requests of this sandbox at once")]
    TooManyRequests,
    /// A malformed `content-length`.
    #[error("malformed content-length")]
    BadLength,
    /// A body over the limit.
    #[error("request body over {} bytes", forward::MAX_REQUEST_BYTES)]
    TooLarge,
    /// A body that stalled or took too long.
    #[error("request body not received in time ({0:?})")]
    SlowBody(Duration),
    /// A body that could not be read.
    #[error("reading the request body: {0}")]
    BodyRead(String),
    /// The upstream did not answer.
    #[error("the model upstream is unreachable ({0})")]
    Upstream(String),
}

impl ProxyError {
    /// The status and Anthropic error type of this error.
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::UnknownToken => (StatusCode::UNAUTHORIZED, "authentication_error"),
            ProxyError::ForeignToken | ProxyError::NotAllowed(_) | ProxyError::DeniedBeta(_) => {
                (StatusCode::FORBIDDEN, "permission_error")
            }
            ProxyError::OverBudget { .. } | ProxyError::TurnOverBudget { .. } => {
                (StatusCode::PAYMENT_REQUIRED, "billing_error")
            }
            ProxyError::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            ProxyError::BadLength | ProxyError::BodyRead(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            ProxyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            ProxyError::SlowBody(_) => (StatusCode::REQUEST_TIMEOUT, "invalid_request_error"),
            ProxyError::Upstream(_) => (StatusCode::BAD_GATEWAY, "api_error"),
        }
    }

    /// `{"type": "error", "error": {"type": …, "message": …}}` with its status.
    pub fn into_response(self) -> Response<Body> {
        let (status, kind) = self.kind();
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": kind, "message": format!("sandboxd model proxy: {self}") }
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Where the proxy forwards each API's calls, and the real key for each.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    /// The Anthropic Messages API's base URL and key (`x-api-key`).
    pub anthropic: (String, Option<String>),
    /// The OpenAI Responses API's base URL and key (`Authorization: Bearer`).
    pub openai: (String, Option<String>),
}

impl Upstreams {
    /// The base URL (without a trailing `/`) and key for `api`.
    fn of(&self, api: routes::Api) -> (&str, Option<&str>) {
        let (url, key) = match api {
            routes::Api::Anthropic => &self.anthropic,
            routes::Api::OpenAi => &self.openai,
        };
        (url.trim_end_matches('/'), key.as_deref())
    }
}

/// The proxy's state.
#[derive(Debug)]
pub struct ModelProxy {
    upstreams: Upstreams,
    client: reqwest::Client,
    /// token -> sandbox id
    tokens: Mutex<HashMap<String, String>>,
    /// sandbox id -> its address on the sandbox network, once its container runs.
    addresses: Mutex<HashMap<String, IpAddr>>,
    usage: Mutex<HashMap<String, ProxyUsage>>,
    /// sandbox id -> requests in flight.
    in_flight: Mutex<HashMap<String, usize>>,
    per_source: conn::PerSource,
    /// Spending cap per sandbox, in USD.
    budget_usd: Option<f64>,
    /// sandbox id -> what its agent is lent: its own cap and its runtime's API.
    lent: Mutex<HashMap<String, Lent>>,
    /// Where sandboxes reach it: the gateway of the current sandbox network.
    base_url: Mutex<Option<String>>,
    /// The budgets of running turns.
    turns: turns::TurnBudgets,
    /// Where each sandbox's consumption is kept across restarts.
    store: OnceLock<Arc<crate::store::Store>>,
}

impl ModelProxy {
    /// A proxy to `upstreams`, authenticating with their keys when given; each sandbox
    /// may spend `budget_usd` when given.
    pub fn new(upstreams: Upstreams, budget_usd: Option<f64>) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!("model proxy: default HTTP client ({e})");
                reqwest::Client::new()
            });
        Arc::new(Self {
            upstreams,
            client,
            tokens: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            per_source: conn::PerSource::default(),
            budget_usd: budget_usd.filter(|b| *b > 0.0),
            lent: Mutex::new(HashMap::new()),
            base_url: Mutex::new(None),
            turns: turns::TurnBudgets::default(),
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
    pub fn base_url(&self) -> Option<String> {
        lock(&self.base_url).clone()
    }

    /// Issues the token of a sandbox.
    pub fn register(&self, sandbox_id: &str) -> String {
        let token = format!("sbxtok_{}", crate::names::new_id(""));
        lock(&self.tokens).insert(token.clone(), sandbox_id.to_owned());
        token
    }

    /// Accepts a token issued before (a sandbox restored from the store).
    pub fn register_token(&self, sandbox_id: &str, token: &str) {
        lock(&self.tokens).insert(token.to_owned(), sandbox_id.to_owned());
    }

    /// Binds a sandbox's token to its container's address: requests with the token
    /// are served from there only, and connections from addresses of no sandbox are
    /// refused. A stale binding of the address (a container gone) is dropped.
    pub fn bind_address(&self, sandbox_id: &str, address: IpAddr) {
        let mut addresses = lock(&self.addresses);
        addresses.retain(|id, ip| *ip != address || id == sandbox_id);
        addresses.insert(sandbox_id.to_owned(), address);
    }

    /// Sets what a sandbox's agent is lent: the cap of its agent (`maxSandboxBudgetUsd`;
    /// the lower of it and the daemon's `--max-sandbox-budget-usd` binds) and the one
    /// API its runtime calls (its token opens no other's routes).
    pub fn lend(&self, sandbox_id: &str, budget_usd: Option<f64>, api: Api) {
        let lent = Lent {
            budget_usd: budget_usd.filter(|b| *b > 0.0),
            api,
        };
        lock(&self.lent).insert(sandbox_id.to_owned(), lent);
    }

    /// Refuses a route of another API than the sandbox's runtime calls.
    fn check_api(&self, sandbox_id: &str, route: &routes::Route) -> Result<(), ProxyError> {
        match lock(&self.lent).get(sandbox_id) {
            Some(lent) if lent.api != route.api => Err(ProxyError::NotAllowed(format!(
                "{} {} (this sandbox's runtime calls the {} API only)",
                route.method,
                route.path,
                lent.api.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Revokes every token of a sandbox.
    pub fn unregister(&self, sandbox_id: &str) {
        lock(&self.lent).remove(sandbox_id);
        lock(&self.tokens).retain(|_, id| id != sandbox_id);
        lock(&self.addresses).remove(sandbox_id);
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
                sum.cost_usd = crate::usd::round(sum.cost_usd + u.cost_usd);
                sum
            })
    }

    /// Serves on `listener` until `shutdown`, holding at most `max_connections`
    /// connections (see [`connection_budget`]); `advertised` is the URL sandboxes use.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        advertised: String,
        max_connections: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        *lock(&self.base_url) = Some(advertised);
        conn::serve(self, listener, max_connections, shutdown).await;
    }

    /// The sandbox whose container has `address`.
    fn sandbox_at(&self, address: IpAddr) -> Option<String> {
        lock(&self.addresses)
            .iter()
            .find(|(_, ip)| **ip == address)
            .map(|(id, _)| id.clone())
    }

    /// The sandbox a request acts for: its token's, when it comes from that sandbox's
    /// address.
    fn authorize(&self, headers: &HeaderMap, peer: IpAddr) -> Result<String, ProxyError> {
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or(ProxyError::UnknownToken)?;
        let sandbox = lock(&self.tokens)
            .iter()
            .find(|(token, _)| {
                crate::auth::constant_time_eq(token.as_bytes(), presented.as_bytes())
            })
            .map(|(_, id)| id.clone())
            .ok_or(ProxyError::UnknownToken)?;
        match lock(&self.addresses).get(&sandbox) {
            Some(address) if *address == peer => Ok(sandbox),
            _ => Err(ProxyError::ForeignToken),
        }
    }

    /// Refuses a sandbox that has spent its budget. Checked before each request:
    /// requests already running finish and are counted.
    fn check_budget(&self, sandbox_id: &str) -> Result<(), ProxyError> {
        let spent = self.usage(sandbox_id).cost_usd;
        let agent = lock(&self.lent)
            .get(sandbox_id)
            .and_then(|lent| lent.budget_usd);
        let budget = match (self.budget_usd, agent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(budget) = budget.filter(|b| spent >= *b) {
            return Err(ProxyError::OverBudget { spent, budget });
        }
        if let Some((ceiling, budget)) = self.turns.ceiling(sandbox_id) {
            if spent >= ceiling {
                let spent = budget + spent - ceiling;
                return Err(ProxyError::TurnOverBudget { spent, budget });
            }
        }
        Ok(())
    }

    /// Counts a request of a sandbox in flight, or refuses it over the cap.
    fn start_request(self: &Arc<Self>, sandbox_id: &str) -> Result<InFlight, ProxyError> {
        let mut in_flight = lock(&self.in_flight);
        let n = in_flight.entry(sandbox_id.to_owned()).or_default();
        if *n >= PER_SANDBOX_IN_FLIGHT {
            return Err(ProxyError::TooManyRequests);
        }
        *n += 1;
        Ok(InFlight {
            proxy: self.clone(),
            sandbox: sandbox_id.to_owned(),
        })
    }

    /// Adds a reply's tokens, and their cost on `model`, to a sandbox's usage.
    fn add_tokens(&self, sandbox_id: &str, tokens: &meter::Tokens, model: Option<&str>) {
        let cost = tokens.cost_usd(model);
        self.count(sandbox_id, |u| {
            u.input_tokens += tokens.all_input();
            u.output_tokens += tokens.output;
            u.cost_usd = crate::usd::round(u.cost_usd + cost);
        });
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

/// A request in flight, counted against its sandbox's cap until dropped.
#[derive(Debug)]
struct InFlight {
    proxy: Arc<ModelProxy>,
    sandbox: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.proxy.in_flight);
        if let Some(n) = in_flight.get_mut(&self.sandbox) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.sandbox);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters and maps are updated in single statements: a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_token(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_str(token).expect("header"));
        headers
    }

    #[test]
    fn tokens_work_from_their_sandbox_only_and_are_revoked() {
        let proxy = ModelProxy::new(Upstreams::default(), None);
        let own: IpAddr = "10.0.0.2".parse().expect("ip");
        let other: IpAddr = "10.0.0.3".parse().expect("ip");
        let token = proxy.register("sb_1");
        let headers = with_token(&token);
        // Not bound to an address yet: refused everywhere.
        assert!(matches!(
            proxy.authorize(&headers, own),
            Err(ProxyError::ForeignToken)
        ));
        proxy.bind_address("sb_1", own);
        assert_eq!(proxy.authorize(&headers, own).ok().as_deref(), Some("sb_1"));
        assert!(matches!(
            proxy.authorize(&headers, other),
            Err(ProxyError::ForeignToken)
        ));
        assert_eq!(proxy.sandbox_at(own).as_deref(), Some("sb_1"));
        assert!(matches!(
            proxy.authorize(&with_token("sbxtok_guess"), own),
            Err(ProxyError::UnknownToken)
        ));
        proxy.unregister("sb_1");
        assert!(matches!(
            proxy.authorize(&headers, own),
            Err(ProxyError::UnknownToken)
        ));
        assert_eq!(proxy.sandbox_at(own), None);
    }

    #[test]
    fn an_address_taken_over_by_a_new_sandbox_leaves_the_old_one() {
        let proxy = ModelProxy::new(Upstreams::default(), None);
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let old = proxy.register("sb_old");
        proxy.bind_address("sb_old", ip);
        proxy.bind_address("sb_new", ip);
        assert_eq!(proxy.sandbox_at(ip).as_deref(), Some("sb_new"));
        assert!(proxy.authorize(&with_token(&old), ip).is_err());
    }

    #[test]
    fn requests_in_flight_and_spending_are_capped_per_sandbox() {
        let proxy = ModelProxy::new(Upstreams::default(), Some(1.0));
        let held: Vec<_> = (0..PER_SANDBOX_IN_FLIGHT)
            .map(|_| proxy.start_request("sb_1").expect("under the cap"))
            .collect();
        assert!(matches!(
            proxy.start_request("sb_1"),
            Err(ProxyError::TooManyRequests)
        ));
        assert!(proxy.start_request("sb_2").is_ok());
        drop(held);
        assert!(proxy.start_request("sb_1").is_ok());

        assert!(proxy.check_budget("sb_1").is_ok());
        let tokens = meter::Tokens {
            input: 100_000,
            output: 100_000,
            ..Default::default()
        };
        proxy.add_tokens("sb_1", &tokens, Some("claude-sonnet-4-5"));
        let usage = proxy.usage("sb_1");
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (100_000, 100_000)
        );
        assert!((usage.cost_usd - 1.8).abs() < 1e-9);
        let refused = proxy.check_budget("sb_1").expect_err("over budget");
        // An agent's own cap (maxSandboxBudgetUsd) binds its sandbox, with no daemon cap too.
        let uncapped = ModelProxy::new(Upstreams::default(), None);
        uncapped.add_tokens("sb_3", &tokens, Some("claude-sonnet-4-5"));
        assert!(uncapped.check_budget("sb_3").is_ok());
        uncapped.lend("sb_3", Some(0.5), Api::Anthropic);
        assert!(uncapped.check_budget("sb_3").is_err());
        assert!(uncapped.check_budget("sb_4").is_ok());
        uncapped.lend("sb_3", None, Api::Anthropic);
        assert!(uncapped.check_budget("sb_3").is_ok());
        assert_eq!(refused.kind().0, StatusCode::PAYMENT_REQUIRED);
        assert!(proxy.check_budget("sb_2").is_ok());
    }

    #[test]
    fn stored_usage_without_a_cost_still_loads() {
        let usage: ProxyUsage =
            serde_json::from_str(r#"{"requests":2,"inputTokens":5,"outputTokens":1}"#)
                .expect("old shape");
        assert_eq!((usage.requests, usage.cost_usd), (2, 0.0));
    }
}
