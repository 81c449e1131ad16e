//! The git token goes only to the clone URL's own scheme, host and port: a git server
//! that redirects the clone elsewhere (another loopback "host" in 127/8, or another port
//! of the same host), before or after it has seen the token, never gets it to the
//! redirect's target.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sandboxd_e2e::{workspace, Daemon, StatusCode};
use serde_json::json;

const TOKEN: &str = "tok-redirect-5c1d9e8f7a";

/// A `redirect_server.py` process, killed on drop.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(host: &str, dir: &tempfile::TempDir, name: &str, role: &[&str]) -> Server {
        let log = dir.path().join(format!("{name}.log"));
        let mut child = Command::new("python3")
            .arg(workspace().join("tests/support/redirect_server.py"))
            .arg(host)
            .arg(&log)
            .args(role)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the redirect server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .expect("PORT n")
            .to_owned();
        Server {
            child,
            base: format!("http://{host}:{port}"),
            log,
        }
    }

    /// The requests it answered.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn a_redirect_never_carries_the_token_to_another_host_or_port() {
    let dir = tempfile::tempdir().expect("dir");
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let path = format!("/v1/sandboxes/{id}/git/clone");
    let basic = base64_token();

    // (catcher host, redirector asks for the token first?)
    let cases = [
        ("127.0.0.2", false),
        ("127.0.0.2", true),
        ("127.0.0.1", false),
        ("127.0.0.1", true),
    ];
    for (n, (catcher_host, auth_first)) in cases.into_iter().enumerate() {
        let catcher = Server::start(catcher_host, &dir, &format!("catch{n}"), &["catch"]);
        let mut role = vec!["redirect", catcher.base.as_str()];
        if auth_first {
            role.push(TOKEN);
        }
        let redirector = Server::start("127.0.0.1", &dir, &format!("redirect{n}"), &role);
        let (status, body) = d
            .call(
                "POST",
                &path,
                Some(json!({
                    "url": format!("{}/demo.git", redirector.base),
                    "token": TOKEN,
                    "path": format!("/home/user/workspace/r{n}")
                })),
            )
            .await;
        let seen = catcher.requests();
        eprintln!(
            "redirect to {} (token asked first: {auth_first}): {status} {body}\n  redirector saw {:?}\n  target saw {seen:?}",
            catcher.base,
            redirector.requests()
        );
        assert!(
            status.is_client_error() || status.is_server_error(),
            "the clone cannot succeed: {status} {body}"
        );
        assert!(
            !body.to_string().contains(TOKEN),
            "the token is in the error: {body}"
        );
        assert!(
            seen.iter().all(|r| r.ends_with(" auth=-")),
            "the redirect target got credentials: {seen:?}"
        );
        if auth_first {
            // The token did go to the clone URL's own server.
            assert!(
                redirector.requests().iter().any(|r| r.contains(&basic)),
                "{:?}",
                redirector.requests()
            );
        }
    }
    // The sandbox and daemon are fine afterwards.
    assert_eq!(d.exec(&id, "echo ok").await["stdout"], "ok\n");
    let (status, _) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// The basic-auth value libgit2 sends for the token (user `x-access-token`).
fn base64_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
}
