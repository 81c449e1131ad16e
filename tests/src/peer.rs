//! "The internet" for egress tests: a TCP server in a network namespace of its own,
//! behind a veth pair routed by the host, so traffic to it takes the same forwarded
//! path as traffic to any outside server.

use std::process::{Child, Command, Stdio};

use crate::Daemon;

/// A TCP server in its own network namespace at `addr`, greeting with `hello <addr>`.
#[derive(Debug)]
pub struct Peer {
    ns: String,
    host_link: String,
    /// The peer's address (`<net>.2`).
    pub addr: String,
    server: Child,
}

/// The port every peer listens on.
pub const PORT: u16 = 8080;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Peer {
    /// A peer on `<net>.2/30`, the host being `<net>.1`; `tag` keeps names unique.
    pub fn start(tag: &str, net: &str) -> Peer {
        let pid = std::process::id() % 100_000;
        let ns = format!("sbxd-eg-{tag}-{pid}");
        let host_link = format!("sxh{tag}{pid}");
        let peer_link = format!("sxp{tag}{pid}");
        let (host_addr, addr) = (format!("{net}.1"), format!("{net}.2"));
        // Whatever an earlier, killed run left under these names.
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .output();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &peer_link,
        ]);
        ip(&["link", "set", &peer_link, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        for args in [
            vec!["addr", "add", &format!("{addr}/30"), "dev", &peer_link],
            vec!["link", "set", &peer_link, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", &ns, "ip"];
            full.extend(args);
            ip(&full);
        }
        let script = format!(
            "import socket\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{addr}', {PORT}))\n\
             s.listen(64)\n\
             print('ready', flush=True)\n\
             while True:\n\
             \x20   c, _ = s.accept()\n\
             \x20   c.sendall(b'hello {addr}\\n')\n\
             \x20   c.close()\n"
        );
        let mut server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer's server");
        let line = crate::first_line(&mut server, "the peer's server");
        assert_eq!(line.trim(), "ready");
        Peer {
            ns,
            host_link,
            addr,
            server,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}

/// What a sandbox gets connecting to `host:port`: the greeting, or `None` when the
/// connection is refused. Anything else (a timeout) fails the test: the firewall
/// rejects, it never leaves a client hanging.
pub async fn reach(d: &Daemon, sandbox: &str, host: &str, port: u16) -> Option<String> {
    let command = format!(
        "timeout 10 bash -c 'exec 3<>/dev/tcp/{host}/{port} && head -n1 <&3'; echo \"rc=$?\""
    );
    let out = d.exec(sandbox, &command).await;
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let stderr = out["stderr"].as_str().unwrap_or_default();
    if stdout.contains("rc=0") {
        return Some(stdout.lines().next().unwrap_or_default().to_owned());
    }
    assert!(
        stderr.contains("refused") || stderr.contains("unreachable"),
        "{sandbox} -> {host}:{port} neither connected nor was refused: {out}"
    );
    None
}
