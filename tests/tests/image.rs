//! The default image has what the platform's sandbox has (Node.js 22 with npm and
//! corepack, Python 3 with pip and venv, a C toolchain), the seeds' own `Sandbox()`
//! example works end to end, and sandboxes trust the host's CA bundle read-only.

use std::path::Path;
use std::process::Command;

use sandboxd_e2e::{Daemon, Options};
use serde_json::{json, Value};

/// Runs `command` and returns (stdout, stderr, exit code), asserting it ran.
async fn run(d: &Daemon, sandbox: &str, command: &str) -> (String, String, i64) {
    let out = d.exec(sandbox, command).await;
    let text = |k: &str| out[k].as_str().unwrap_or_default().to_owned();
    (
        text("stdout"),
        text("stderr"),
        out["exitCode"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test]
async fn the_default_image_has_node_python_and_build_tools() {
    let d = Daemon::start().await;
    let sb = d.create_sandbox(json!({ "agent": "test" })).await;

    let (out, err, code) = run(
        &d,
        &sb,
        "node --version; npm --version; npx --version; corepack --version; \
         command -v pnpm yarn; python --version; python3 --version; pip --version; \
         whoami",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("v22."), "node: {out}");
    assert!(lines[1].starts_with("10."), "npm: {out}");
    assert!(
        out.contains("/usr/local/bin/pnpm\n/usr/local/bin/yarn\n"),
        "{out}"
    );
    assert!(out.contains("Python 3.11"), "{out}");
    assert!(out.contains("pip "), "{out}");
    assert!(out.ends_with("user\n"), "{out}");

    // A C program builds with make and cc; a venv gets its own pip; Node runs ESM.
    let (out, err, code) = run(
        &d,
        &sb,
        "mkdir -p /tmp/c && cd /tmp/c && printf '#include <stdio.h>\\nint main(void){puts(\"built\");return 0;}\\n' > hello.c \
         && printf 'hello: hello.c\\n\\tcc -O2 -o hello hello.c\\n' > Makefile && make -s && ./hello \
         && python -m venv /tmp/venv && /tmp/venv/bin/python -c 'import sys; print(sys.prefix)' \
         && echo 'console.log(typeof fetch, [1,2].at(-1))' > /tmp/x.mjs && node /tmp/x.mjs",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "built\n/tmp/venv\nfunction 2\n", "{err}");
}

/// The seeds' `Sandbox()` example (`server-sdk.txt`), verbatim, plus a package.json
/// for `pnpm install` to install (the example assumes the project has one).
#[tokio::test]
async fn the_seeds_sandbox_example_works_end_to_end() {
    let seed = json!({
        "runtime": "claude-code",
        "model": "claude-sonnet-4-6",
        "systemPrompt": "You are a helpful support agent.",
        "sandbox": {
            "apt": ["ffmpeg", "poppler-utils"],
            "setup": ["corepack enable", "pnpm install"],
            "files": {
                "/home/user/.claude/skills/refunds/SKILL.md": "Skill content goes here...",
                "/home/user/README.local.md": "# Sandbox notes"
            },
            "cwd": "/home/user"
        }
    });
    let d = Daemon::start_with(Options::default().agent("support", seed)).await;
    let package = json!({
        "name": "seed-project",
        "private": true,
        "dependencies": { "is-number": "7.0.0" }
    });
    let (status, body) = d
        .call(
            "POST",
            "/v1/sandboxes",
            Some(json!({ "agent": "support", "files": { "package.json": package.to_string() } })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "active", "{body}");
    let sb = body["id"].as_str().expect("id");

    let (out, err, code) = run(
        &d,
        sb,
        "pwd; ffmpeg -hide_banner -version | head -1 | cut -d' ' -f1-2; pdftotext -v 2>&1 | head -1 | cut -d' ' -f1; \
         node -p 'require(\"is-number\")(7)'; stat -c %U node_modules pnpm-lock.yaml; \
         cat .claude/skills/refunds/SKILL.md; echo; cat README.local.md; echo; pnpm --version",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/home/user", "{out}");
    assert_eq!(lines[1], "ffmpeg version", "{out}");
    assert_eq!(lines[2], "pdftotext", "{out}");
    assert_eq!(lines[3], "true", "{out}");
    // Setup ran as root; what it left in the home belongs to the user.
    assert_eq!(lines[4..6], ["user", "user"], "{out}");
    assert_eq!(lines[6], "Skill content goes here...", "{out}");
    assert_eq!(lines[7], "# Sandbox notes", "{out}");
    assert!(
        lines[8].chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{out}"
    );

    // The agent itself (as `user`) installs more with npm and pip.
    let (out, err, code) = run(
        &d,
        sb,
        "npm install --silent --no-audit --no-fund is-odd@3.0.1 >/dev/null && node -p 'require(\"is-odd\")(3)' \
         && pip install --quiet --user --no-warn-script-location six==1.16.0 2>&1 | grep -v WARNING; python -c 'import six; print(six.__version__)'",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "true\n1.16.0\n", "{err}");
}

/// A CA, and a certificate for `localhost` it signed, made with openssl.
fn make_ca(dir: &Path) {
    let sh = format!(
        "set -e; cd '{}'; \
         openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sandboxd-test-ca \
           -keyout ca.key -out ca.pem 2>/dev/null; \
         openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf; \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
           -extfile ext.cnf -out server.pem 2>/dev/null",
        dir.display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(sh)
        .status()
        .expect("openssl");
    assert!(status.success(), "making the test CA failed");
}

/// Starts an https server on localhost:8443 inside the sandbox, runs `clients`, stops it.
fn with_server(clients: &str) -> String {
    format!(
        "cd /tmp && python3 -c '
import http.server, ssl
s = http.server.HTTPServer((\"127.0.0.1\", 8443), http.server.SimpleHTTPRequestHandler)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(\"/tmp/tls/server.pem\", \"/tmp/tls/server.key\")
s.socket = c.wrap_socket(s.socket, server_side=True); s.serve_forever()' >/dev/null 2>&1 &
echo hello > /tmp/index.html
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break; sleep 0.1; done
{clients}
kill %1"
    )
}

const CLIENTS: &str = r#"
curl -sS https://localhost:8443/index.html 2>&1 | head -1
node -e 'fetch("https://localhost:8443/index.html").then(r => r.text()).then(t => console.log(t.trim()), e => console.log("node:", e.cause?.code ?? e.message))'
python3 -c 'import urllib.request; print(urllib.request.urlopen("https://localhost:8443/index.html").read().decode().strip())' 2>&1 | tail -1
git ls-remote https://localhost:8443/none.git 2>&1 | grep -ci certificate
"#;

async fn tls_sandbox(d: &Daemon, tls: &Path) -> String {
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("tls file");
    d.create_sandbox(json!({
        "agent": "test",
        "files": { "/tmp/tls/server.pem": read("server.pem"), "/tmp/tls/server.key": read("server.key") }
    }))
    .await
}

fn env_of(out: &Value) -> String {
    out["stdout"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn sandboxes_trust_the_host_ca_read_only_and_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(dir.path());
    let bundle = dir.path().join("ca.pem").display().to_string();

    // Trusted: curl, Node, Python and git all accept the CA's certificate.
    let d = Daemon::start_with(Options {
        args: vec![
            "--trust-host-ca".into(),
            "always".into(),
            "--host-ca-bundle".into(),
            bundle,
        ],
        ..Options::default()
    })
    .await;
    let sb = tls_sandbox(&d, dir.path()).await;
    let (out, err, _) = run(&d, &sb, &with_server(CLIENTS)).await;
    assert_eq!(out, "hello\nhello\nhello\n0\n", "{err}");
    let vars = env_of(
        &d.exec(&sb, "echo $NODE_EXTRA_CA_CERTS $SSL_CERT_FILE $PIP_CERT")
            .await,
    );
    assert_eq!(vars, "/.sandboxd/ca-certificates.crt /.sandboxd/ca-certificates.crt /.sandboxd/ca-certificates.crt\n");

    // Nobody in the sandbox can change the bundle, root included.
    let container = sb.replacen("sb_", "sbx-", 1);
    let root = Command::new("docker")
        .args(["exec", "-u", "0", &container, "sh", "-c"])
        .arg("echo evil >> /.sandboxd/ca-certificates.crt; umount /.sandboxd/ca-certificates.crt")
        .output()
        .expect("docker exec");
    let stderr = String::from_utf8_lossy(&root.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!root.status.success(), "{stderr}");
    let (out, _, _) = run(&d, &sb, "grep -c evil /.sandboxd/ca-certificates.crt").await;
    assert_eq!(out, "0\n");
    drop(d);

    // Never: the same certificate is refused, and nothing points at a bundle.
    let d = Daemon::start_with(Options {
        args: vec!["--trust-host-ca".into(), "never".into()],
        ..Options::default()
    })
    .await;
    let sb = tls_sandbox(&d, dir.path()).await;
    let (out, err, _) = run(&d, &sb, &with_server(CLIENTS)).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("certificate"), "curl: {out}{err}");
    assert!(
        lines[1].starts_with("node: ") && lines[1] != "node: hello",
        "{out}"
    );
    assert!(
        lines[2].contains("CERTIFICATE_VERIFY_FAILED"),
        "python: {out}"
    );
    assert_eq!(lines[3], "1", "git: {out}");
    assert_eq!(
        env_of(&d.exec(&sb, "echo ${SSL_CERT_FILE:-unset}").await),
        "unset\n"
    );
    drop(d);

    // Auto: a host bundle equal to the image's own adds nothing.
    let image = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            sandboxd_e2e::default_image(),
        ])
        .arg("/etc/ssl/certs/ca-certificates.crt")
        .output()
        .expect("docker run");
    assert!(image.status.success());
    let same = dir.path().join("same.pem");
    std::fs::write(&same, &image.stdout).expect("write");
    let d = Daemon::start_with(Options {
        args: vec!["--host-ca-bundle".into(), same.display().to_string()],
        ..Options::default()
    })
    .await;
    let sb = d.create_sandbox(json!({ "agent": "test" })).await;
    assert_eq!(
        env_of(&d.exec(&sb, "echo ${SSL_CERT_FILE:-unset}").await),
        "unset\n"
    );
    assert!(
        d.log_text().contains("the host CA bundle is the image's"),
        "{}",
        d.log_text()
    );
}
