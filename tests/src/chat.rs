//! Chat turns as the tests read them: the SSE chunks, the ids a response names, and a
//! daemon's chat and thread calls.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, Daemon, StatusCode};

/// The chunks of an SSE body (`data: {json}` lines); `[DONE]` becomes the string
/// `"[DONE]"`.
pub fn sse_chunks(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
        .collect()
}

/// The sandbox and thread a chat response names in its `x-sandbox-id` and
/// `x-thread-id` headers.
pub fn chat_ids(response: &reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        response.headers()[name]
            .to_str()
            .expect("an ASCII id header")
            .to_owned()
    };
    (header("x-sandbox-id"), header("x-thread-id"))
}

/// The text a stream's `text-delta` chunks spell.
pub fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .filter_map(|c| c["delta"].as_str())
        .collect()
}

/// The `type`s of chunks.
pub fn chunk_types(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| {
            c["type"]
                .as_str()
                .unwrap_or(c.as_str().unwrap_or("?"))
                .to_owned()
        })
        .collect()
}

/// A user message in the AI SDK's shape.
pub fn user_message(text: &str) -> Value {
    serde_json::json!({
        "id": format!("u-{}", free_port()),
        "role": "user",
        "parts": [{ "type": "text", "text": text }]
    })
}

impl Daemon {
    /// A whole chat turn: status, the response headers, and the chunks.
    pub async fn chat(
        &self,
        slug: &str,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<Value>) {
        let res = self
            .request("POST", &format!("/v1/chat/{slug}"))
            .json(&body)
            .send()
            .await
            .expect("chat request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("chat body");
        let chunks = if status == StatusCode::OK {
            sse_chunks(&text)
        } else {
            vec![serde_json::from_str(&text).unwrap_or(Value::String(text))]
        };
        (status, headers, chunks)
    }

    /// A thread (which must exist) with its messages.
    pub async fn thread(&self, sandbox: &str, thread: &str) -> Value {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/sandboxes/{sandbox}/threads/{thread}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls a thread until its status is not `streaming`; returns it.
    pub async fn settled_thread(&self, sandbox: &str, thread: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.thread(sandbox, thread).await;
            if body["status"] != "streaming" {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "the thread kept streaming: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
