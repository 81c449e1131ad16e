//! Git clone end to end against a real smart-HTTP git server on loopback that demands a
//! token: success, shallow depth, wrong or missing token, unknown repository,
//! unreachable host, an occupied target, and the token's absence afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use sandboxd_e2e::{workspace, Daemon, StatusCode};
use serde_json::json;

const TOKEN: &str = "tok-e2e-1f2e3d4c5b6a";

/// A git server on 127.0.0.1 serving bare repositories, killed on drop.
struct GitServer {
    child: Child,
    url: String,
    _root: tempfile::TempDir,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

/// Serves `demo.git`: three commits on branch `trunk`, with an executable and a symlink.
fn start_server() -> GitServer {
    let root = tempfile::tempdir().expect("root");
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    git(w, &["init", "-q", "-b", "trunk"]);
    for i in 1..=3 {
        std::fs::write(w.join("README.md"), format!("version {i}\n")).expect("write");
        git(w, &["add", "."]);
        git(w, &["commit", "-q", "-m", &format!("commit {i}")]);
    }
    std::fs::write(w.join("run.sh"), "#!/bin/sh\necho ran\n").expect("write");
    git(w, &["add", "run.sh"]);
    git(w, &["update-index", "--chmod=+x", "run.sh"]);
    std::os::unix::fs::symlink("README.md", w.join("link.md")).expect("symlink");
    git(w, &["add", "link.md"]);
    git(w, &["commit", "-q", "-m", "commit 4"]);
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &w.display().to_string(),
            "demo.git",
        ],
    );

    let script = workspace().join("tests/support/git_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root.path())
        .arg(TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the git server");
    let line = sandboxd_e2e::first_line(&mut child, "the git server");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .expect("PORT n")
        .to_owned();
    GitServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _root: root,
    }
}

#[tokio::test]
async fn clone_with_a_token_then_the_token_is_gone() {
    let server = start_server();
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let path = format!("/v1/sandboxes/{id}/git/clone");
    let clone = |body| d.call("POST", &path, Some(body));

    // Full clone into the default path.
    let (status, out) =
        clone(json!({ "url": format!("{}/demo.git", server.url), "token": TOKEN })).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out,
        json!({ "path": "/home/user/workspace/demo", "branch": "trunk" })
    );
    let check = d
        .exec(
            &id,
            "cd ~/workspace/demo && git log --oneline | wc -l && git status --porcelain | wc -l \
             && stat -c '%U' . README.md .git/config && ./run.sh && readlink link.md \
             && git remote get-url origin",
        )
        .await;
    assert_eq!(
        check["stdout"],
        format!(
            "4\n0\nuser\nuser\nuser\nran\nREADME.md\n{}/demo.git\n",
            server.url
        ),
        "{check}"
    );
    // The token is nowhere in the sandbox's files, nor in the daemon's log.
    let grep = d
        .exec(
            &id,
            &format!("grep -r -l '{TOKEN}' /home/user /tmp /etc 2>/dev/null | head; echo end"),
        )
        .await;
    assert_eq!(grep["stdout"], "end\n", "{grep}");
    assert!(
        !d.log_text().contains(TOKEN),
        "the token is in the daemon log"
    );

    // Shallow clone into a chosen path.
    let (status, out) = clone(json!({
        "url": format!("{}/demo.git", server.url), "token": TOKEN,
        "path": "shallow", "depth": 1
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["path"], "/home/user/shallow");
    let log = d
        .exec(
            &id,
            "cd shallow && git log --oneline | wc -l && git rev-parse --is-shallow-repository",
        )
        .await;
    assert_eq!(log["stdout"], "1\ntrue\n", "{log}");

    // The same target again: 409.
    let (status, out) = clone(
        json!({ "url": format!("{}/demo.git", server.url), "token": TOKEN, "path": "shallow" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert!(out["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("/home/user/shallow")));

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn clone_failures_are_distinct_and_do_not_leak_the_token() {
    let server = start_server();
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let repo = format!("{}/demo.git", server.url);
    let cases = [
        (
            json!({ "url": repo, "token": "wrong-token-xyz" }),
            StatusCode::FORBIDDEN,
            "git_auth_failed",
            "refused the token",
        ),
        (
            json!({ "url": repo }),
            StatusCode::FORBIDDEN,
            "git_auth_failed",
            "requires credentials",
        ),
        (
            json!({ "url": format!("{}/nope.git", server.url), "token": TOKEN }),
            StatusCode::NOT_FOUND,
            "git_repo_not_found",
            "does not exist",
        ),
        (
            json!({ "url": "http://127.0.0.1:1/x.git", "token": TOKEN }),
            StatusCode::BAD_GATEWAY,
            "git_unreachable",
            "could not be reached",
        ),
        (
            json!({ "url": "file:///etc" }),
            StatusCode::BAD_REQUEST,
            "invalid_url",
            "scheme",
        ),
        (
            json!({ "url": "not a url" }),
            StatusCode::BAD_REQUEST,
            "invalid_url",
            "url",
        ),
        (
            json!({ "url": repo, "depth": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "depth",
        ),
        (
            json!({ "repo": repo }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "url",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (got, out) = d
            .call(
                "POST",
                &format!("/v1/sandboxes/{id}/git/clone"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{body}: {out}");
        assert_eq!(out["error"]["code"], code, "{body}: {out}");
        let message = out["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {out}");
        assert!(
            !message.contains("wrong-token-xyz") && !message.contains(TOKEN),
            "{out}"
        );
    }
    // Nothing was left in the default target by the failures.
    let out = d.exec(&id, "ls -A ~/workspace 2>/dev/null | wc -l").await;
    assert_eq!(out["stdout"], "0\n", "{out}");
    assert!(!d.log_text().contains("wrong-token-xyz"));

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}
