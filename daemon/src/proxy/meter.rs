//! Metering: the `usage` of each model reply as it streams by (SSE events, or one JSON
//! body read to its end), and what those tokens cost.
//!
//! Reading is bounded: an SSE line longer than [`MAX_LINE`] is skipped, a JSON body
//! longer than [`MAX_JSON`] is not parsed (and logged). Replies come from the upstream,
//! not the sandbox, but their size depends on what the sandbox asked for.

/// Longest SSE line parsed; `message_start`/`message_delta` events are a few hundred
/// bytes, content deltas that long carry no usage.
const MAX_LINE: usize = 1 << 20;
/// Largest non-streamed body kept to read its `usage`: a reply of the largest output
/// (128k tokens) is a few MiB of JSON.
const MAX_JSON: usize = 16 << 20;

/// Tokens of one reply, or of part of one, and the model that produced them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tokens {
    /// Uncached input tokens.
    pub input: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Output tokens.
    pub output: u64,
}

impl Tokens {
    /// All input tokens, cached or not.
    pub fn all_input(&self) -> u64 {
        self.input + self.cache_write + self.cache_read
    }

    fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }

    /// What they cost on `model`, in USD.
    pub fn cost_usd(&self, model: Option<&str>) -> f64 {
        let (input, output) = price(model);
        (self.input as f64 * input
            + self.cache_write as f64 * input * CACHE_WRITE
            + self.cache_read as f64 * input * CACHE_READ
            + self.output as f64 * output)
            / 1e6
    }
}

/// Prompt-cache writes (5-minute cache) and reads, as multiples of the input price.
const CACHE_WRITE: f64 = 1.25;
const CACHE_READ: f64 = 0.1;

/// USD per million input and output tokens, by model-id prefix, from Anthropic's and
/// OpenAI's public price lists (docs.anthropic.com "Pricing", openai.com/api/pricing):
/// list-price estimates, not a bill. The most specific prefix comes first. OpenAI's
/// cached input is a tenth of its input price, as Anthropic's cache reads are.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-3-opus", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-haiku", 0.25, 1.25),
    ("gpt-5-nano", 0.05, 0.4),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5", 1.25, 10.0),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("o4-mini", 1.1, 4.4),
    ("o3", 2.0, 8.0),
];
/// A model not in the table (or not named) is priced at the table's highest, so an
/// unknown model never spends a budget more slowly than a known one.
const UNKNOWN: (f64, f64) = (15.0, 75.0);

fn price(model: Option<&str>) -> (f64, f64) {
    model
        .and_then(|m| PRICES.iter().find(|(prefix, _, _)| m.starts_with(prefix)))
        .map(|&(_, input, output)| (input, output))
        .unwrap_or(UNKNOWN)
}

/// Reads `usage` out of one reply as it passes.
#[derive(Debug)]
pub struct Meter {
    sse: bool,
    pending: Vec<u8>,
    /// An over-long line (or body) is being skipped.
    skipping: bool,
    /// The model named by the reply, once seen.
    model: Option<String>,
    /// Output tokens already reported: `message_delta` counts are cumulative.
    output_seen: u64,
}

impl Meter {
    /// A meter for a reply of this `content-type`: SSE events, else one JSON body.
    pub fn new(content_type: &str) -> Self {
        Self {
            sse: content_type.starts_with("text/event-stream"),
            pending: Vec::new(),
            skipping: false,
            model: None,
            output_seen: 0,
        }
    }

    /// The model the reply named, if it did yet.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Feeds bytes; returns the tokens newly seen in complete SSE lines.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Tokens> {
        if !self.sse {
            if !self.skipping {
                self.pending.extend_from_slice(bytes);
                if self.pending.len() > MAX_JSON {
                    tracing::warn!("model reply over {MAX_JSON} bytes: its usage is not metered");
                    self.skipping = true;
                    self.pending = Vec::new();
                }
            }
            return None;
        }
        let mut total = Tokens::default();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(pos + 1);
            rest = after;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            self.pending.extend_from_slice(line);
            let line = std::mem::take(&mut self.pending);
            self.read_line(&line, &mut total);
        }
        if !self.skipping {
            self.pending.extend_from_slice(rest);
            if self.pending.len() > MAX_LINE {
                self.pending = Vec::new();
                self.skipping = true;
            }
        }
        (!total.is_zero()).then_some(total)
    }

    /// The reply ended: returns what a JSON body (or a last unterminated line) held.
    pub fn finish(&mut self) -> Option<Tokens> {
        let rest = std::mem::take(&mut self.pending);
        if self.skipping || rest.is_empty() {
            return None;
        }
        let mut total = Tokens::default();
        self.read_line(&rest, &mut total);
        (!total.is_zero()).then_some(total)
    }

    fn read_line(&mut self, line: &[u8], total: &mut Tokens) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        let json = text.strip_prefix("data:").unwrap_or(text).trim();
        let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
            return;
        };
        if let Some(response) = openai_response(&value) {
            // The OpenAI Responses API: the final event (or a non-streamed body) carries
            // the model and the whole usage, cached input included in `input_tokens`.
            if let Some(model) = response.get("model").and_then(|m| m.as_str()) {
                self.model = Some(model.to_owned());
            }
            let Some(u) = response.get("usage") else {
                return;
            };
            let n = |p: &str| {
                u.pointer(p)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
            };
            let cached = n("/input_tokens_details/cached_tokens");
            total.input += n("/input_tokens").saturating_sub(cached);
            total.cache_read += cached;
            total.output += n("/output_tokens");
            return;
        }
        // message_start carries the model and the input; message_delta the output so
        // far (cumulative); a non-streamed message carries everything.
        let (message, usage, input, output) = match value.get("type").and_then(|t| t.as_str()) {
            Some("message_start") => (
                value.get("message"),
                value.pointer("/message/usage"),
                true,
                false,
            ),
            Some("message_delta") => (None, value.get("usage"), false, true),
            Some("message") => (Some(&value), value.get("usage"), true, true),
            _ => return,
        };
        if let Some(model) = message
            .and_then(|m| m.get("model"))
            .and_then(|m| m.as_str())
        {
            self.model = Some(model.to_owned());
        }
        let Some(u) = usage else { return };
        let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        if input {
            total.input += n("input_tokens");
            total.cache_write += n("cache_creation_input_tokens");
            total.cache_read += n("cache_read_input_tokens");
        }
        if output {
            let seen = n("output_tokens");
            total.output += seen.saturating_sub(self.output_seen);
            self.output_seen = self.output_seen.max(seen);
        }
    }
}

/// The response object of an OpenAI Responses reply that ends it: the final SSE event
/// (`response.completed`, `.incomplete` or `.failed`), or a non-streamed body.
fn openai_response(value: &serde_json::Value) -> Option<&serde_json::Value> {
    match value.get("type").and_then(|t| t.as_str()) {
        Some("response.completed" | "response.incomplete" | "response.failed") => {
            value.get("response")
        }
        None if value.get("object").and_then(|o| o.as_str()) == Some("response") => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(meter: &mut Meter, text: &str, piece: usize) -> Tokens {
        let mut sum = Tokens::default();
        let mut add = |t: Tokens| {
            sum.input += t.input;
            sum.cache_write += t.cache_write;
            sum.cache_read += t.cache_read;
            sum.output += t.output;
        };
        for chunk in text.as_bytes().chunks(piece) {
            if let Some(t) = meter.feed(chunk) {
                add(t);
            }
        }
        if let Some(t) = meter.finish() {
            add(t);
        }
        sum
    }

    #[test]
    fn sse_usage_is_read_wherever_the_stream_is_split() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n\
                      event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n\
                      event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n";
        for piece in [1, 7, 4096] {
            let mut meter = Meter::new("text/event-stream; charset=utf-8");
            let sum = feed_all(&mut meter, stream, piece);
            assert_eq!((sum.all_input(), sum.output), (15, 7), "pieces of {piece}");
            assert_eq!(meter.model(), Some("claude-sonnet-4-5"));
        }
    }

    #[test]
    fn openai_responses_are_metered_from_their_final_event() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5-codex\",\"usage\":null}}\n\n\
                      event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
                      event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5-codex\",\"usage\":{\"input_tokens\":120,\"input_tokens_details\":{\"cached_tokens\":20},\"output_tokens\":9}}}\n\n";
        for piece in [1, 13, 4096] {
            let mut meter = Meter::new("text/event-stream");
            let sum = feed_all(&mut meter, stream, piece);
            assert_eq!((sum.input, sum.cache_read, sum.output), (100, 20, 9));
            assert_eq!(meter.model(), Some("gpt-5-codex"));
        }
    }

    #[test]
    fn a_non_streamed_body_is_metered_at_its_end() {
        let body = "{\n  \"type\": \"message\",\n  \"model\": \"claude-haiku-4-5\",\n  \"usage\": {\"input_tokens\": 10, \"cache_creation_input_tokens\": 4, \"output_tokens\": 6}\n}";
        let mut meter = Meter::new("application/json");
        let sum = feed_all(&mut meter, body, 5);
        assert_eq!((sum.input, sum.cache_write, sum.output), (10, 4, 6));
        assert_eq!(meter.model(), Some("claude-haiku-4-5"));
    }

    #[test]
    fn over_long_lines_are_skipped_and_reading_goes_on() {
        let mut meter = Meter::new("text/event-stream");
        let long = format!("data: {}\n", "x".repeat(MAX_LINE + 10));
        assert_eq!(meter.feed(long.as_bytes()), None);
        assert!(meter.pending.len() <= MAX_LINE);
        let t = meter
            .feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n")
            .expect("usage after the long line");
        assert_eq!(t.output, 3);
    }

    #[test]
    fn prices_follow_the_model_and_unknown_models_cost_the_most() {
        let t = Tokens {
            input: 1_000_000,
            cache_write: 0,
            cache_read: 1_000_000,
            output: 1_000_000,
        };
        assert!((t.cost_usd(Some("claude-sonnet-4-5-20250929")) - 18.3).abs() < 1e-9);
        assert!((t.cost_usd(Some("claude-opus-4-5")) - 30.5).abs() < 1e-9);
        assert!((t.cost_usd(Some("claude-opus-4-1")) - 91.5).abs() < 1e-9);
        assert_eq!(t.cost_usd(Some("gpt-9")), t.cost_usd(None));
        // Codex's models at OpenAI's prices, not at the unknown model's.
        let codex = Tokens {
            input: 1_000_000,
            output: 1_000_000,
            ..Tokens::default()
        };
        assert!((codex.cost_usd(Some("gpt-5-codex")) - 11.25).abs() < 1e-9);
        assert!((codex.cost_usd(Some("gpt-5-mini")) - 2.25).abs() < 1e-9);
        assert!((t.cost_usd(None) - 91.5).abs() < 1e-9);
    }
}
