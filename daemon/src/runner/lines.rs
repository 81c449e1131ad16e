//! Splits the CLI's stdout into lines in linear time and bounded memory: each byte is
//! scanned once, as it arrives, and a line longer than the limit is dropped while it
//! streams past instead of being buffered; one that would parse into too many values
//! is dropped before parsing. The CLI's stdout is hostile input: a
//! process in the sandbox runs as the CLI's uid and can write to it.

/// The longest line kept. The largest legitimate `stream-json` line we know of is a
/// tool result carrying an image the Read tool loaded: the API takes images up to
/// 5 MB, about 6.7 MB in base64, and the line carries it twice (the `tool_result`
/// content and `tool_use_result`), so about 14 MB. Text results are far smaller (the
/// CLI caps a Read at 256 KB and Bash output at 30,000 characters). 16 MiB leaves a
/// margin over that and bounds what one line costs to buffer and parse.
pub const MAX_LINE: usize = 16 << 20;

/// The most JSON values a line may hold, estimated before it is parsed. Parsed, a
/// value takes 32 bytes or more however few bytes it had on the wire (`0,` is two), so
/// a line of tiny values would cost sixteen times its length and more; legitimate lines
/// carry their bulk in strings (file contents, base64) and hold far fewer values.
pub const MAX_VALUES: usize = 1 << 20;

/// An upper bound of the values in a JSON text: every value after the first follows a
/// `,` or opens with `[` or `{` (those inside strings are counted too, which only
/// overestimates). Linear and cheap: it lets a line be refused before parsing it.
pub fn values_at_most(line: &[u8]) -> usize {
    1 + memchr::memchr3_iter(b',', b'[', b'{', line).count()
}

/// One piece of output.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A complete line, without its newline.
    Line(Vec<u8>),
    /// A line passed [`MAX_LINE`] (it is dropped as it streams past, up to its
    /// newline) or [`MAX_VALUES`].
    Dropped,
}

/// The splitter's state between chunks of output.
#[derive(Debug)]
pub struct Lines {
    /// The start of the current line (never more than `max` bytes).
    pending: Vec<u8>,
    /// The current line is over the limit: drop bytes up to the next newline.
    skipping: bool,
    max: usize,
    max_values: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Self::with_limits(MAX_LINE, MAX_VALUES)
    }
}

impl Lines {
    /// A splitter that drops lines longer than `max` bytes or with more than
    /// `max_values` JSON values.
    pub fn with_limits(max: usize, max_values: usize) -> Self {
        Self {
            pending: Vec::new(),
            skipping: false,
            max,
            max_values,
        }
    }

    /// Takes the next chunk of output; returns what it completes, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            if self.skipping {
                let Some(end) = newline else { break };
                self.skipping = false;
                bytes = &bytes[end + 1..];
                continue;
            }
            let take = newline.unwrap_or(bytes.len());
            if self.pending.len() + take > self.max {
                self.pending = Vec::new();
                out.push(Piece::Dropped);
                match newline {
                    Some(end) => bytes = &bytes[end + 1..],
                    None => {
                        self.skipping = true;
                        break;
                    }
                }
                continue;
            }
            self.pending.extend_from_slice(&bytes[..take]);
            match newline {
                Some(end) => {
                    let line = std::mem::take(&mut self.pending);
                    out.push(if values_at_most(&line) > self.max_values {
                        Piece::Dropped
                    } else {
                        Piece::Line(line)
                    });
                    bytes = &bytes[end + 1..];
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Piece {
        Piece::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"{\"a\""), vec![]);
        assert_eq!(
            lines.push(b":1}\n{\"b\":2}\n{"),
            vec![line("{\"a\":1}"), line("{\"b\":2}")]
        );
        assert_eq!(lines.push(b"}\n\n"), vec![line("{}"), line("")]);
        assert_eq!(lines.push(b""), vec![]);
    }

    #[test]
    fn an_over_long_line_is_dropped_once_without_being_kept() {
        let mut lines = Lines::with_limits(8, 4);
        assert_eq!(lines.push(b"short\n0123"), vec![line("short")]);
        // Past the limit in the middle of a chunk: reported once, then skipped.
        assert_eq!(lines.push(b"456789"), vec![Piece::Dropped]);
        assert!(lines.pending.capacity() == 0 && lines.skipping);
        assert_eq!(lines.push(&[b'x'; 1000]), vec![]);
        assert!(lines.pending.capacity() == 0);
        assert_eq!(lines.push(b"xx\nnext\n"), vec![line("next")]);
        // A long line complete within one chunk, followed by a good one.
        assert_eq!(
            lines.push(b"0123456789\nok\n"),
            vec![Piece::Dropped, line("ok")]
        );
        // Exactly the limit is kept.
        assert_eq!(lines.push(b"01234567\n"), vec![line("01234567")]);
        // So are four values, not five.
        assert_eq!(lines.push(b"[0,0,0]\n"), vec![line("[0,0,0]")]);
        assert_eq!(lines.push(b"[0,0,0,0]\n"), vec![Piece::Dropped]);
    }

    #[test]
    fn values_are_overestimated_never_under() {
        for text in [
            r#"{"a":[1,2,{"b":[]}],"c":"x,y"}"#,
            "0",
            "[]",
            r#"[[0,0],{}]"#,
        ] {
            fn count(v: &serde_json::Value) -> usize {
                1 + match v {
                    serde_json::Value::Array(a) => a.iter().map(count).sum(),
                    serde_json::Value::Object(o) => o.values().map(count).sum(),
                    _ => 0,
                }
            }
            let value: serde_json::Value = serde_json::from_str(text).expect("json");
            assert!(values_at_most(text.as_bytes()) >= count(&value), "{text}");
        }
        assert_eq!(values_at_most(b"0"), 1);
    }

    #[test]
    fn many_small_chunks_of_one_huge_line_cost_linear_time() {
        // 64 MiB in 64 KiB chunks: each byte is looked at once (the old splitter
        // rescanned the whole pending buffer per chunk, 32 GiB of scanning here).
        let mut lines = Lines::default();
        let chunk = vec![b'a'; 64 << 10];
        let mut pieces = Vec::new();
        for _ in 0..1024 {
            pieces.extend(lines.push(&chunk));
        }
        pieces.extend(lines.push(b"\n{}\n"));
        assert_eq!(pieces, vec![Piece::Dropped, line("{}")]);
    }
}
