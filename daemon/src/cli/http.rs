//! The one way the CLI talks to a running daemon: its URL and API key, a JSON call,
//! and the request builders streaming commands start from.

use serde_json::Value;

use crate::config::DaemonArgs;

/// A daemon to call, with its API key.
#[derive(Debug, Clone)]
pub struct Daemon {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Daemon {
    /// The daemon `args` name, with the key from `SANDBOXD_API_KEY` or its key file.
    pub fn new(args: &DaemonArgs) -> anyhow::Result<Self> {
        Ok(Self::with_key(args, args.api_key()?))
    }

    /// The daemon `args` name, with a key already read.
    pub fn with_key(args: &DaemonArgs, key: String) -> Self {
        Self {
            base: args.url.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::new(),
        }
    }

    /// The daemon's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The API key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A request to `path` carrying the key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// Sends a request built by [`Daemon::request`], naming the daemon when it is
    /// unreachable.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the daemon at {}: {e}", self.base))
    }

    /// One JSON call: the answer, or an error line naming the status and the
    /// daemon's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Result<Value, String>> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.send(request).await?;
        Ok(answer(response).await)
    }
}

/// A response's JSON, or `"<status>: <message>"` for a failure.
pub async fn answer(response: reqwest::Response) -> Result<Value, String> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(text);
        Err(format!("{status}: {message}"))
    }
}
