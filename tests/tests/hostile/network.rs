//! The sandbox network on a fresh or tampered engine: several daemons starting at once
//! make exactly one network, duplicates left by anyone are settled, a network removed
//! under a running daemon is made again (and `/healthz` never says 200 meanwhile), and
//! sandboxes neither reach nor resolve each other.
//!
//! Each test uses a network name of its own (`--network`), so the engine's shared
//! `sandboxd` network is never touched and the tests run beside the rest of the suite.

use std::process::Command;
use std::time::Duration;

use sandboxd_e2e::{
    chat_ids, docker_inspect, eventually, sse_chunks, text_of, user_message, Daemon, Options,
    ScriptedModel, StatusCode,
};
use serde_json::json;

/// A network name of this test's own, removed (with whatever of that name is left)
/// on drop.
struct TestNetwork(String);

impl TestNetwork {
    fn new(test: &str) -> Self {
        Self(format!("sbxt-{test}-{}", std::process::id()))
    }

    /// The ids of the networks with exactly this name.
    fn ids(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "network",
                "ls",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Name}}",
            ])
            .output()
            .expect("docker network ls");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, name)| *name == self.0)
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    /// Creates one more network of this name through the engine API without
    /// `CheckDuplicate`, as a racing client on Docker 20.10 would.
    fn create_duplicate(&self) -> String {
        let body = json!({ "Name": self.0, "CheckDuplicate": false, "Driver": "bridge" });
        let out = Command::new("curl")
            .args([
                "-sf",
                "--unix-socket",
                "/var/run/docker.sock",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                "http://localhost/networks/create",
            ])
            .output()
            .expect("curl the engine");
        let reply: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("the engine's reply");
        reply["Id"].as_str().expect("an Id").to_owned()
    }

    fn args(&self) -> Vec<String> {
        vec!["--network".into(), self.0.clone()]
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = Command::new("docker").args(["network", "rm", &id]).output();
        }
    }
}

async fn assert_serves(d: &Daemon) {
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    assert_eq!(d.exec(&id, "echo ok").await["stdout"], "ok\n");
    d.delete_sandbox(&id).await;
}

#[tokio::test]
async fn daemons_starting_together_on_an_engine_without_the_network_make_one() {
    let network = TestNetwork::new("together");
    assert!(network.ids().is_empty());
    let starts = (0..4).map(|_| {
        Daemon::start_with(Options {
            args: network.args(),
            ..Options::default()
        })
    });
    let daemons = futures_util::future::join_all(starts).await;
    assert_eq!(network.ids().len(), 1, "one network named {}", network.0);
    for d in &daemons {
        assert_serves(d).await;
    }
    assert_eq!(network.ids().len(), 1);
    for d in &daemons {
        d.assert_no_leaks();
    }
}

#[tokio::test]
async fn duplicate_networks_are_settled_not_multiplied() {
    let network = TestNetwork::new("dupes");
    let first = network.create_duplicate();
    let second = network.create_duplicate();
    assert_ne!(first, second);
    assert_eq!(network.ids().len(), 2, "the engine allowed two of one name");

    let d = Daemon::start_with(Options {
        args: network.args(),
        ..Options::default()
    })
    .await;
    assert_eq!(network.ids(), vec![first.clone()], "the oldest one is kept");
    assert_serves(&d).await;
    // Its readiness checks never create another one.
    for _ in 0..20 {
        let res = d
            .anonymous("GET", "/healthz")
            .send()
            .await
            .expect("healthz");
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(network.ids(), vec![first]);
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_network_removed_under_the_daemon_is_made_again() {
    let network = TestNetwork::new("removed");
    // Two chats, two conversations: each reply belongs to its prompt.
    let model = ScriptedModel::start(&json!([
        { "text": "first", "prompt": "hi" },
        { "text": "second", "prompt": "again" }
    ]));
    let d = Daemon::start_with(
        Options {
            args: network.args(),
            ..Options::default()
        }
        .with_model(&model),
    )
    .await;
    let (status, headers, chunks) = d
        .chat("test", json!({ "messages": [user_message("hi")] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text_of(&chunks),
        "first",
        "{}\n{}",
        String::from_utf8_lossy(
            &Command::new("iptables")
                .args(["-S"])
                .output()
                .expect("iptables")
                .stdout
        ),
        d.log_text()
    );
    let first = headers["x-sandbox-id"].to_str().expect("sandbox id");
    d.delete_sandbox(first).await;
    let before = network.ids();
    assert_eq!(before.len(), 1);

    let rm = Command::new("docker")
        .args(["network", "rm", &before[0]])
        .output()
        .expect("docker network rm");
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    // Until it is back, /healthz must not promise a create would work.
    let res = d
        .anonymous("GET", "/healthz")
        .send()
        .await
        .expect("healthz");
    if res.status() == StatusCode::OK {
        assert_eq!(network.ids().len(), 1, "200 while no network exists");
    }
    eventually(
        Duration::from_secs(60),
        "the network is made again",
        || async {
            d.anonymous("GET", "/healthz")
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;
    let after = network.ids();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);

    // Sandboxes join the new network and reach the model proxy on its gateway.
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message("again")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (sandbox, _) = chat_ids(&res);
    let chunks = sse_chunks(&res.text().await.expect("body"));
    assert_eq!(text_of(&chunks), "second", "{chunks:?}\n{}", d.log_text());
    let joined = docker_inspect(
        &sandbox_container(&d, &sandbox).await,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
    );
    assert_eq!(joined.as_deref(), Some(network.0.as_str()));
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

/// The container name of a sandbox.
async fn sandbox_container(d: &Daemon, id: &str) -> String {
    let (_, body) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    body["sandboxId"].as_str().expect("sandboxId").to_owned()
}

#[tokio::test]
async fn sandboxes_are_refused_by_and_unknown_to_each_other() {
    let network = TestNetwork::new("neighbours");
    let d = Daemon::start_with(
        Options {
            args: network.args(),
            ..Options::default()
        }
        .agent(
            "walled",
            json!({ "sandbox": { "networkAllowOut": ["192.0.2.1/32"] } }),
        ),
    )
    .await;
    let open = d.create_sandbox(json!({ "agent": "test" })).await;
    let walled = d.create_sandbox(json!({ "agent": "walled" })).await;
    let walled_name = sandbox_container(&d, &walled).await;
    let open_name = sandbox_container(&d, &open).await;
    let ip = docker_inspect(
        &walled_name,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    )
    .expect("ip");

    // A connection to another sandbox is refused at once, not left to hang, though
    // the port listens (the host reaches it).
    let listen = "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8080, \
                  Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c \"hello\\n\"; close $c }'";
    d.exec(&walled, &format!("nohup {listen} >/dev/null 2>&1 &"))
        .await;
    let from_host = format!("exec 3<>/dev/tcp/{ip}/8080 && head -1 <&3");
    eventually(Duration::from_secs(10), "the neighbour listens", || async {
        let out = Command::new("timeout")
            .args(["2", "bash", "-c", &from_host])
            .output()
            .expect("bash");
        out.stdout == b"hello\n"
    })
    .await;
    let probe = format!("timeout 5 bash -c 'echo > /dev/tcp/{ip}/8080' 2>&1; echo \"exit=$?\"");
    let out = d.exec(&open, &probe).await;
    let stdout = out["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.contains("Connection refused") && stdout.ends_with("exit=1\n"),
        "{out}"
    );

    // Without a policy Docker's DNS names the neighbours; under an allow list the
    // sandbox has no DNS but its pinned names.
    let lookup = format!("getent hosts {open_name}; echo \"exit=$?\"");
    let out = d
        .exec(&walled, &format!("timeout 10 bash -c '{lookup}'"))
        .await;
    assert_eq!(out["stdout"], "exit=2\n", "{out}");
    let out = d
        .exec(
            &open,
            &format!("getent hosts {walled_name} >/dev/null; echo \"exit=$?\""),
        )
        .await;
    assert_eq!(out["stdout"], "exit=0\n", "the control: {out}");

    for id in [&open, &walled] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}
