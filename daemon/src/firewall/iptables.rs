//! Running `iptables` and `iptables-restore`, and reading back what `iptables -S`
//! prints.

use tokio::process::Command;

use super::FirewallError;

/// The words of a rule. `iptables -S` quotes comments; ours have no spaces, so
/// unquoting word by word gives back what was given.
pub(super) fn args(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect()
}

/// The word after `flag` in a rule.
pub(super) fn word_after<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| w == flag)?;
    words.get(at + 1).map(String::as_str)
}

/// Where a tool lives: the sbin directories first (a daemon started with a user's
/// `PATH` may not list them), else the bare name for the system to find.
pub(super) fn tool(name: &str) -> std::path::PathBuf {
    ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| name.into())
}

/// Runs `iptables -w` with `args`; its stderr is the error.
pub(super) async fn iptables(args: &[String]) -> Result<String, FirewallError> {
    iptables_in(None, args).await
}

/// Runs `iptables -w` with `args` in the network namespace of the process `pid`
/// (through `nsenter`), or the host's when `None`; its stderr is the error.
pub(super) async fn iptables_in(
    pid: Option<i64>,
    args: &[String],
) -> Result<String, FirewallError> {
    let mut command = match pid {
        Some(pid) => {
            let mut command = Command::new(tool("nsenter"));
            command
                .arg(format!("--net=/proc/{pid}/ns/net"))
                .arg(tool("iptables"));
            command
        }
        None => Command::new(tool("iptables")),
    };
    let out = command
        .kill_on_drop(true)
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| FirewallError(format!("running iptables: {e} (is iptables installed?)")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Applies an `iptables-restore` script without flushing anything it does not name.
pub(super) async fn restore(script: &str) -> Result<(), FirewallError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(tool("iptables-restore"))
        .kill_on_drop(true)
        .args(["-w", "--noflush"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError(format!("running iptables-restore: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| FirewallError(format!("writing to iptables-restore: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| FirewallError(format!("iptables-restore: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub(super) async fn list_rules(chain: &str) -> Result<Vec<String>, FirewallError> {
    let text = iptables(&["-S".to_owned(), chain.to_owned()]).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_owned)
        .collect())
}

/// Deletes a rule given as `iptables -S` printed it (`-A CHAIN ...`).
pub(super) async fn delete_rule(rule: &str) -> Result<(), FirewallError> {
    let mut words = args(rule);
    if words.first().map(String::as_str) == Some("-A") {
        words[0] = "-D".to_owned();
    }
    match iptables(&words).await {
        Ok(_) => Ok(()),
        // Someone else removed it first.
        Err(e) if e.0.contains("does a matching rule exist") || e.0.contains("No chain") => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) async fn ensure_chain(chain: &str) -> Result<(), FirewallError> {
    match iptables(&["-N".to_owned(), chain.to_owned()]).await {
        Ok(_) => Ok(()),
        Err(e) if e.0.contains("exists") => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) async fn drop_chain(chain: &str) -> Result<(), FirewallError> {
    for flag in ["-F", "-X"] {
        match iptables(&[flag.to_owned(), chain.to_owned()]).await {
            Ok(_) => {}
            Err(e) if e.0.contains("No chain") || e.0.contains("does not exist") => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Adds a rule unless it is there: at `position` (1-based), or appended.
pub(super) async fn ensure_rule(
    chain: &str,
    position: Option<usize>,
    rule: &[String],
) -> Result<(), FirewallError> {
    let mut check = vec!["-C".to_owned(), chain.to_owned()];
    check.extend(rule.iter().cloned());
    if iptables(&check).await.is_ok() {
        return Ok(());
    }
    let mut add = match position {
        Some(p) => vec!["-I".to_owned(), chain.to_owned(), p.to_string()],
        None => vec!["-A".to_owned(), chain.to_owned()],
    };
    add.extend(rule.iter().cloned());
    iptables(&add).await.map(|_| ())
}
