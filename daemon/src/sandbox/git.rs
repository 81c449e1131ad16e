//! Git clone: clone on the host with git2 into a temporary directory, then stream the
//! tree into the sandbox as a tar through sandbox-init (`tar -x` as the sandbox user).
//!
//! The token authenticates the clone and is then gone: it is handed to libgit2 only
//! through the credentials callback, so the stored remote URL never carries it, and it
//! is scrubbed from every error message.
//!
//! The token goes only to the clone URL's own origin (scheme, host and port): the
//! callback refuses any other URL asking, and libgit2 follows no redirect to another
//! host (a server answering 302 elsewhere fails the clone with a message naming the
//! redirect; clone from its target directly). A redirect within the same host is
//! followed, but the token is given there only if the scheme and port are the same too.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sandbox_init::protocol::{ErrorKind, ExecRequest, Frame, Reply, Request, CHUNK_LEN};
use tokio::sync::mpsc;

use super::{paths, Sandbox, SandboxError, Sandboxes};
use crate::init_client::InitError;
use crate::names::{HOME, USER};

/// A clone call.
#[derive(Debug, Clone, Default)]
pub struct CloneParams {
    /// `http(s)://` or `git://` URL.
    pub url: String,
    /// Target directory (default `/home/user/workspace/<repo name>`).
    pub path: Option<String>,
    /// Token for the git server (never stored).
    pub token: Option<String>,
    /// Shallow clone depth.
    pub depth: Option<u32>,
}

/// What a clone produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    /// Where the repository is in the sandbox.
    pub path: String,
    /// The branch checked out.
    pub branch: String,
}

/// Why a clone failed, distinctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitFailureKind {
    /// The URL is unusable.
    InvalidUrl,
    /// The server refused the credentials (or wanted some).
    Auth,
    /// The repository does not exist there.
    NotFound,
    /// The host could not be reached.
    Unreachable,
    /// The target directory exists and is not empty.
    TargetExists,
    /// Anything else.
    Other,
}

/// A failed clone, with a message a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GitFailure {
    /// Its class.
    pub kind: GitFailureKind,
    /// What happened and what to do.
    pub message: String,
}

impl GitFailure {
    fn new(kind: GitFailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A URL split into what is stored and what authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CleanUrl {
    /// The URL without credentials.
    url: String,
    /// Its origin, the only one the token is given to.
    origin: url::Origin,
    /// A password found in the URL's userinfo.
    password: Option<String>,
    /// A user name found in the URL's userinfo.
    username: Option<String>,
    /// The repository's name (last path segment without `.git`).
    name: String,
}

fn clean_url(raw: &str) -> Result<CleanUrl, GitFailure> {
    let invalid = |why: &str| GitFailure::new(GitFailureKind::InvalidUrl, format!("url: {why}"));
    let mut url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https" | "git") {
        return Err(invalid(&format!(
            "the {:?} scheme is not supported; use an http(s):// or git:// URL",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    let username = (!url.username().is_empty()).then(|| url.username().to_owned());
    let password = url.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| p.to_owned())
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let name = url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .map(|n| n.trim_end_matches(".git").to_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .ok_or_else(|| invalid("it names no repository"))?;
    Ok(CleanUrl {
        origin: url.origin(),
        url: url.to_string(),
        password,
        username,
        name,
    })
}

/// Whether `asking` (the URL libgit2 wants credentials for, after any redirect) is on
/// the clone URL's own scheme, host and port.
fn same_origin(clone: &CleanUrl, asking: &str) -> bool {
    url::Url::parse(asking).is_ok_and(|u| u.origin() == clone.origin)
}

/// Replaces every occurrence of the secret with `***`.
fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => message.replace(s, "***"),
        _ => message.to_owned(),
    }
}

/// Clones into `dest` on the host; returns the checked-out branch.
fn clone_on_host(
    url: &CleanUrl,
    token: Option<&str>,
    depth: Option<u32>,
    dest: &Path,
) -> Result<String, GitFailure> {
    // Set when the server refused our credentials (asked again) or we had none to give.
    let refused = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicBool::new(false));
    let mut callbacks = git2::RemoteCallbacks::new();
    {
        let asked = asked.clone();
        let refused = refused.clone();
        let token = token.map(str::to_owned);
        let username = url.username.clone();
        let clone_url = url.clone();
        callbacks.credentials(move |asking, from_url, allowed| {
            if !same_origin(&clone_url, asking) {
                // Redirected elsewhere: that server never gets the token.
                refused.store(true, Ordering::SeqCst);
                return Err(git2::Error::from_str(&format!(
                    "{} asks for credentials, but the token is only for {}",
                    origin_text(asking),
                    clone_url.origin.ascii_serialization()
                )));
            }
            // A second call means the first answer was refused: stop instead of looping.
            if asked.swap(true, Ordering::SeqCst) {
                refused.store(true, Ordering::SeqCst);
                return Err(git2::Error::from_str("the credentials were refused"));
            }
            match &token {
                Some(token) if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) => {
                    let user = username.as_deref().or(from_url).unwrap_or("x-access-token");
                    git2::Cred::userpass_plaintext(user, token)
                }
                _ => {
                    refused.store(true, Ordering::SeqCst);
                    Err(git2::Error::from_str("the server asks for credentials"))
                }
            }
        });
    }
    let mut fetch = git2::FetchOptions::new();
    fetch.remote_callbacks(callbacks);
    // libgit2's default follows a first redirect to any host.
    fetch.follow_redirects(git2::RemoteRedirect::None);
    if let Some(depth) = depth {
        fetch.depth(depth as i32);
    }
    let repo = git2::build::RepoBuilder::new()
        .fetch_options(fetch)
        .clone(&url.url, dest)
        .map_err(|e| classify(&e, refused.load(Ordering::SeqCst), url, token))?;
    repo.remote_set_url("origin", &url.url)
        .map_err(|e| GitFailure::new(GitFailureKind::Other, e.message().to_owned()))?;
    let head = repo.head().ok();
    Ok(head
        .as_ref()
        .and_then(|h| h.shorthand().ok())
        .unwrap_or("HEAD")
        .to_owned())
}

/// The scheme, host and port of a URL, for a message.
fn origin_text(raw: &str) -> String {
    url::Url::parse(raw)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "another server".to_owned())
}

fn classify(e: &git2::Error, refused: bool, url: &CleanUrl, token: Option<&str>) -> GitFailure {
    let detail = scrub(e.message(), token);
    let message = e.message().to_lowercase();
    let (kind, what) = if message.contains("cannot redirect") || message.contains("only for") {
        (
            GitFailureKind::Other,
            "the git server redirected the clone to another server, which the token is not \
             for; clone from the redirect's target directly",
        )
    } else if e.code() == git2::ErrorCode::Auth
        || refused
        || message.contains("401")
        || message.contains("403")
    {
        (
            GitFailureKind::Auth,
            if token.is_some() {
                "the git server refused the token; check that it is valid and can read the repository"
            } else {
                "the git server requires credentials; pass a token"
            },
        )
    } else if message.contains("404") || message.contains("not found") {
        (
            GitFailureKind::NotFound,
            "the repository does not exist at that URL (or the token cannot see it)",
        )
    } else if matches!(e.class(), git2::ErrorClass::Net | git2::ErrorClass::Os)
        || message.contains("failed to connect")
        || message.contains("resolve")
    {
        (
            GitFailureKind::Unreachable,
            "the git server could not be reached; check the URL and the network",
        )
    } else {
        (GitFailureKind::Other, "the clone failed")
    };
    GitFailure::new(kind, format!("cloning {}: {what} ({detail})", url.url))
}

impl Sandboxes {
    /// Clones a repository into a sandbox.
    pub async fn git_clone(
        &self,
        sandbox: &Sandbox,
        params: CloneParams,
    ) -> Result<Cloned, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        if params.depth == Some(0) {
            return Err(SandboxError::Invalid("depth must be at least 1".into()));
        }
        let url = clean_url(&params.url)?;
        let token = params
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| url.password.clone());
        let target = match &params.path {
            Some(path) => paths::resolve(path)?,
            None => format!("{}/workspace/{}", HOME, url.name),
        };
        ensure_empty_target(sandbox, &target).await?;

        let checkout = tempfile::Builder::new()
            .prefix("sandboxd-clone-")
            .tempdir()
            .map_err(|e| {
                SandboxError::Invalid(format!("cannot create a temporary directory: {e}"))
            })?;
        let dest = checkout.path().join("repo");
        let branch = {
            let (url, token, dest, depth) =
                (url.clone(), token.clone(), dest.clone(), params.depth);
            tokio::task::spawn_blocking(move || clone_on_host(&url, token.as_deref(), depth, &dest))
                .await
                .map_err(|e| SandboxError::Invalid(format!("the clone task failed: {e}")))??
        };
        sandbox.init.mkdir(&target, USER).await?;
        untar_into(sandbox, dest, &target)
            .await
            .map_err(|e| match e {
                SandboxError::Invalid(m) => SandboxError::Invalid(scrub(&m, token.as_deref())),
                other => other,
            })?;
        tracing::info!(sandbox = %sandbox.id, url = %url.url, path = %target, %branch, "cloned");
        Ok(Cloned {
            path: target,
            branch,
        })
    }
}

/// Refuses an existing file or non-empty directory at the target.
async fn ensure_empty_target(sandbox: &Sandbox, target: &str) -> Result<(), SandboxError> {
    match sandbox.init.list(target, 1, USER).await {
        Ok(entries) if entries.is_empty() => Ok(()),
        Ok(_) => Err(GitFailure::new(
            GitFailureKind::TargetExists,
            format!("{target} already exists and is not empty; choose another path"),
        )
        .into()),
        Err(InitError::Remote {
            kind: ErrorKind::NotFound,
            ..
        }) => Ok(()),
        Err(InitError::Remote {
            kind: ErrorKind::NotADirectory,
            ..
        }) => Err(GitFailure::new(
            GitFailureKind::TargetExists,
            format!("{target} already exists and is a file; choose another path"),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Streams `dir` as a tar into `tar -x` running as the sandbox user in `target`.
async fn untar_into(sandbox: &Sandbox, dir: PathBuf, target: &str) -> Result<(), SandboxError> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let producer = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK_LEN),
        };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let result = builder
            .append_dir_all(".", &dir)
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| w.flush_chunk());
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let request = ExecRequest {
        argv: vec![
            "tar".into(),
            "-x".into(),
            "--no-same-owner".into(),
            "-f".into(),
            "-".into(),
            "-C".into(),
            target.to_owned(),
        ],
        env: Vec::new(),
        cwd: Some(target.to_owned()),
        user: USER.into(),
        timeout_ms: None,
        stdin: true,
        output_limit: Some(64 * 1024),
    };
    let (mut conn, _) = sandbox.init.spawn(request).await?;
    while let Some(chunk) = rx.recv().await {
        let chunk =
            chunk.map_err(|e| SandboxError::Invalid(format!("packing the clone failed: {e}")))?;
        conn.send(&Frame::Stdin(chunk)).await?;
    }
    let _ = producer.await;
    conn.send(&Frame::Message(Request::CloseStdin)).await?;
    let mut stderr = Vec::new();
    loop {
        match conn.recv().await? {
            Some(Frame::Stderr(b)) => stderr.extend_from_slice(&b),
            Some(Frame::Stdout(_)) => {}
            Some(Frame::Message(Reply::Exited(exit))) if exit.code == Some(0) => return Ok(()),
            Some(Frame::Message(Reply::Exited(exit))) => {
                return Err(SandboxError::Invalid(format!(
                    "unpacking the clone into {target} failed ({exit:?}): {}",
                    String::from_utf8_lossy(&stderr).trim()
                )))
            }
            Some(other) => {
                return Err(InitError::Protocol(format!("unexpected {other:?} from tar")).into())
            }
            None => return Err(InitError::Protocol("tar ended without an exit".into()).into()),
        }
    }
}

/// A `Write` that sends CHUNK_LEN pieces into a channel (from a blocking thread).
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_LEN));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_LEN - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_LEN {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_cleaned_of_credentials() {
        let u = clean_url("https://bob:s%40cret@example.com/org/repo.git").expect("valid");
        assert_eq!(u.url, "https://example.com/org/repo.git");
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.username.as_deref(), Some("bob"));
        assert_eq!(u.name, "repo");
        assert_eq!(clean_url("http://h/x/y/").expect("valid").name, "y");
    }

    #[test]
    fn the_token_is_for_the_clone_urls_origin_only() {
        let u = clean_url("https://git.example.com/org/repo.git").expect("valid");
        assert!(same_origin(
            &u,
            "https://git.example.com/org/repo.git/info/refs"
        ));
        assert!(same_origin(&u, "https://GIT.example.com:443/other"));
        for other in [
            "https://evil.example.com/org/repo.git",
            "http://git.example.com/org/repo.git",
            "https://git.example.com:8443/org/repo.git",
            "https://git.example.com.evil.net/org/repo.git",
            "not a url",
        ] {
            assert!(!same_origin(&u, other), "{other}");
        }
    }

    #[test]
    fn local_and_odd_urls_are_refused() {
        for bad in [
            "file:///etc",
            "/etc/passwd",
            "ssh://h/r",
            "https:///r",
            "http://h/",
        ] {
            let e = clean_url(bad).unwrap_err();
            assert_eq!(e.kind, GitFailureKind::InvalidUrl, "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(
            scrub("bad token tok123 here", Some("tok123")),
            "bad token *** here"
        );
        assert_eq!(scrub("nothing", None), "nothing");
    }
}
