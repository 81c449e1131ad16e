//! The scripted model: `sandboxd scripted-model` as a process, and the daemon options
//! that point Claude Code or Codex at it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{claude_bin, codex_bin, daemon_bin, first_line, Options};

/// A `sandboxd scripted-model` process playing a script, killed on drop.
#[derive(Debug)]
pub struct ScriptedModel {
    child: Child,
    /// Its base URL.
    pub url: String,
    log: PathBuf,
    headers_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScriptedModel {
    /// Starts one on a free loopback port.
    pub fn start(script: &Value) -> ScriptedModel {
        let dir = tempfile::tempdir().expect("dir");
        let script_path = dir.path().join("script.json");
        std::fs::write(&script_path, script.to_string()).expect("script");
        let log = dir.path().join("requests.jsonl");
        let headers_log = dir.path().join("headers.jsonl");
        let mut child = Command::new(daemon_bin("debug"))
            .args(["scripted-model", "--listen", "127.0.0.1:0", "--script"])
            .arg(&script_path)
            .arg("--log")
            .arg(&log)
            .arg("--headers-log")
            .arg(&headers_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripted-model");
        let line = first_line(&mut child, "sandboxd scripted-model");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening on URL")
            .to_owned();
        ScriptedModel {
            child,
            url,
            log,
            headers_log,
            _dir: dir,
        }
    }

    /// Every request body it received, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl ScriptedModel {
    /// Every request's path and credentials (`x-api-key`, `authorization`), in order.
    pub fn credentials(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.headers_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Options {
    /// Runs turns against `model` with the real claude binary.
    pub fn with_model(mut self, model: &ScriptedModel) -> Self {
        self.args.extend([
            "--model-upstream".to_owned(),
            model.url.clone(),
            "--claude-bin".to_owned(),
            claude_bin(),
        ]);
        self
    }
}

impl Options {
    /// Runs codex turns against `model` (as the OpenAI upstream) with the real codex
    /// binary; the daemon's OpenAI key is `key`.
    pub fn with_codex(mut self, model: &ScriptedModel, key: &str) -> Self {
        self.args.extend([
            "--openai-upstream".to_owned(),
            model.url.clone(),
            "--codex-bin".to_owned(),
            codex_bin(),
        ]);
        self.env.push(("OPENAI_API_KEY".into(), key.into()));
        self
    }
}
