//! The PTY side of `process.Process`: `Start` with `pty.size` runs the process on a
//! terminal (sandbox-init's `PtyExec`), `SendInput` with `input.pty` types into it,
//! `Update` with `pty.size` resizes it.

use std::collections::BTreeMap;

use sandbox_init::protocol::PtySize;
use serde::Deserialize;

use super::super::connect::RpcError;
use super::table::Proc;

/// The size a terminal gets when the request gives none (or zero).
const DEFAULT_SIZE: PtySize = PtySize { cols: 80, rows: 24 };

/// The environment a terminal session gets unless the request sets it (envd's and
/// the SDKs' defaults).
const DEFAULT_ENVS: [(&str, &str); 3] = [
    ("TERM", "xterm-256color"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
];

/// `PTY{size{cols, rows}}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PtyConfig {
    #[serde(default)]
    size: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
struct Size {
    #[serde(default)]
    cols: u32,
    #[serde(default)]
    rows: u32,
}

/// The requested size: a missing or zero dimension takes its default, one past what a
/// terminal holds is refused.
pub(super) fn size_of(config: Option<&PtyConfig>) -> Result<PtySize, RpcError> {
    let size = config
        .and_then(|c| c.size.as_ref())
        .ok_or_else(|| RpcError::invalid("pty.size is missing"))?;
    let dimension = |value: u32, default: u16, name: &str| match value {
        0 => Ok(default),
        v => u16::try_from(v)
            .ok()
            .filter(|v| *v <= 10_000)
            .ok_or_else(|| RpcError::invalid(format!("pty.size.{name}: at most 10000"))),
    };
    Ok(PtySize {
        cols: dimension(size.cols, DEFAULT_SIZE.cols, "cols")?,
        rows: dimension(size.rows, DEFAULT_SIZE.rows, "rows")?,
    })
}

/// Adds the terminal defaults the request did not set.
pub(super) fn default_envs(envs: &mut BTreeMap<String, String>) {
    for (key, value) in DEFAULT_ENVS {
        envs.entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
}

/// Refuses terminal input or a resize for a process without a terminal.
pub(super) fn has_terminal(proc: &Proc) -> Result<(), RpcError> {
    if proc.pty {
        Ok(())
    } else {
        Err(RpcError::invalid(
            "the process has no terminal (start it with pty)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_are_bounded() {
        let parse = |json: &str| -> PtyConfig { serde_json::from_str(json).expect("json") };
        assert_eq!(
            size_of(Some(&parse(r#"{"size":{"cols":120,"rows":40}}"#))).expect("ok"),
            PtySize {
                cols: 120,
                rows: 40
            }
        );
        assert_eq!(
            size_of(Some(&parse(r#"{"size":{}}"#))).expect("ok"),
            DEFAULT_SIZE
        );
        assert!(size_of(Some(&parse(r#"{"size":{"cols":70000,"rows":1}}"#))).is_err());
        assert!(size_of(Some(&parse("{}"))).is_err());
        let mut envs = BTreeMap::from([("TERM".to_owned(), "dumb".to_owned())]);
        default_envs(&mut envs);
        assert_eq!(envs["TERM"], "dumb");
        assert_eq!(envs["LANG"], "C.UTF-8");
    }
}
