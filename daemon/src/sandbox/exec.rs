//! Exec: a command through `bash -lc` as the sandbox user, output collected up to a
//! bound, the whole process group killed on timeout.

use std::collections::BTreeMap;

use sandbox_init::protocol::ExecRequest;

use super::{paths, Sandbox, SandboxError, Sandboxes};
use crate::agents::check_env_name;
use crate::names::USER;

/// The longest timeout a call may ask for (a day).
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Exit code reported for a command killed by its timeout (as `timeout(1)` does).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// An exec call.
#[derive(Debug, Clone, Default)]
pub struct ExecParams {
    /// The shell command.
    pub command: String,
    /// Working directory (relative to `/home/user`); the sandbox's cwd by default.
    pub cwd: Option<String>,
    /// Extra environment.
    pub envs: BTreeMap<String, String>,
    /// Timeout in milliseconds; the daemon default when absent.
    pub timeout_ms: Option<u64>,
}

/// What an exec produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    /// Stdout (invalid UTF-8 replaced), at most the output limit.
    pub stdout: String,
    /// Stderr, likewise.
    pub stderr: String,
    /// The exit code; `128 + signal` when killed by a signal, 124 on timeout.
    pub exit_code: i32,
    /// The timeout killed it.
    pub timed_out: bool,
    /// Stdout was cut at the limit.
    pub stdout_truncated: bool,
    /// Stderr was cut at the limit.
    pub stderr_truncated: bool,
    /// The timeout that applied.
    pub timeout_ms: u64,
}

impl Sandboxes {
    /// Runs a command in an active sandbox.
    pub async fn exec(
        &self,
        sandbox: &std::sync::Arc<Sandbox>,
        params: ExecParams,
    ) -> Result<ExecResult, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        // A running command is activity: the sandbox does not expire under it.
        let _busy = sandbox.busy();
        let timeout_ms = match params.timeout_ms {
            None => self.settings.exec_timeout_ms,
            Some(0) => return Err(SandboxError::Invalid("timeoutMs must be at least 1".into())),
            Some(t) if t > MAX_TIMEOUT_MS => {
                return Err(SandboxError::Invalid(format!(
                    "timeoutMs must be at most {MAX_TIMEOUT_MS} (a day)"
                )))
            }
            Some(t) => t,
        };
        for key in params.envs.keys() {
            check_env_name(key).map_err(|e| SandboxError::Invalid(format!("envs: {e}")))?;
        }
        let cwd = match &params.cwd {
            Some(cwd) => paths::resolve(cwd)?,
            None => sandbox.cwd.clone(),
        };
        let request = ExecRequest {
            argv: vec!["bash".into(), "-lc".into(), params.command],
            env: params.envs.into_iter().collect(),
            cwd: Some(cwd),
            user: USER.into(),
            timeout_ms: Some(timeout_ms),
            stdin: false,
            output_limit: Some(self.settings.exec_output_limit),
        };
        let out = tokio::select! {
            out = sandbox.init.exec(request) => out?,
            () = sandbox.frozen() => return Err(sandbox.paused_midway("the command")),
        };
        let exit_code = if out.exit.timed_out {
            TIMEOUT_EXIT_CODE
        } else {
            match (out.exit.code, out.exit.signal) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                (None, None) => -1,
            }
        };
        Ok(ExecResult {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit_code,
            timed_out: out.exit.timed_out,
            stdout_truncated: out.exit.stdout_dropped > 0,
            stderr_truncated: out.exit.stderr_dropped > 0,
            timeout_ms,
        })
    }
}
