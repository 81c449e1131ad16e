//! Network egress: `networkAllowOut` / `networkDenyOut` are enforced (addresses,
//! networks, domain names; deny wins; an allow list denies everything else), the
//! model proxy stays reachable, and metadata addresses and the host's own services
//! never are.
//!
//! The "internet" here is peers the test starts in network namespaces of their own,
//! each behind a veth pair routed by the host, so traffic to them takes the same
//! forwarded path as traffic to any outside server.

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;

use sandboxd_e2e::peer::{reach, Peer, PORT};
use sandboxd_e2e::{user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

/// A TCP service of the host on every address, greeting with `hello host`.
fn host_service() -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"hello host\n");
        }
    });
    port
}

/// The sandbox's default gateway: the host as sandboxes see it.
async fn gateway(d: &Daemon, sandbox: &str) -> String {
    let out = d
        .exec(
            sandbox,
            r#"gw=$(awk '$2=="00000000"{print $3}' /proc/net/route); printf '%d.%d.%d.%d' 0x${gw:6:2} 0x${gw:4:2} 0x${gw:2:2} 0x${gw:0:2}"#,
        )
        .await;
    out["stdout"].as_str().expect("stdout").to_owned()
}

async fn create(d: &Daemon, body: Value) -> String {
    d.create_sandbox(body).await
}

fn greeting(peer: &Peer) -> Option<String> {
    Some(format!("hello {}", peer.addr))
}

#[tokio::test]
async fn egress_lists_are_enforced_and_the_host_and_metadata_are_never_reachable() {
    let a = Peer::start("a", "10.213.1");
    let b = Peer::start("b", "10.213.2");
    // Link-local, as cloud metadata services are (not 169.254.169.254 itself, so a
    // cloud CI machine keeps its own).
    let metadata = Peer::start("m", "169.254.77");
    let host_port = host_service();
    let model = ScriptedModel::start(&json!([{ "text": "proxy reached" }]));
    let d = Daemon::start_with(
        Options::default()
            .agent(
                "walled",
                json!({ "sandbox": { "networkAllowOut": ["10.213.2.0/24"] } }),
            )
            .with_model(&model),
    )
    .await;

    // No policy: the peers are reachable, the host and metadata are not.
    let open = create(&d, json!({ "agent": "test" })).await;
    assert_eq!(reach(&d, &open, &a.addr, PORT).await, greeting(&a));
    assert_eq!(reach(&d, &open, &b.addr, PORT).await, greeting(&b));
    assert_eq!(reach(&d, &open, &metadata.addr, PORT).await, None);
    let gw = gateway(&d, &open).await;
    assert_eq!(
        reach(&d, &open, &gw, host_port).await,
        None,
        "host via {gw}"
    );
    // The host's address on another interface is the host too.
    assert_eq!(reach(&d, &open, "10.213.1.1", host_port).await, None);

    // A deny list blocks what it names only.
    let denied = create(
        &d,
        json!({ "agent": "test", "networkDenyOut": [a.addr.clone()] }),
    )
    .await;
    assert_eq!(reach(&d, &denied, &a.addr, PORT).await, None);
    assert_eq!(reach(&d, &denied, &b.addr, PORT).await, greeting(&b));

    // The agent's allow list: only that network, and the model proxy still works.
    let walled = create(&d, json!({ "agent": "walled" })).await;
    assert_eq!(reach(&d, &walled, &b.addr, PORT).await, greeting(&b));
    assert_eq!(reach(&d, &walled, &a.addr, PORT).await, None);
    assert_eq!(reach(&d, &walled, &gw, host_port).await, None);
    let (status, _, chunks) = d
        .chat(
            "walled",
            json!({ "sandboxId": walled, "messages": [user_message("hi")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text: String = chunks
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .filter_map(|c| c["delta"].as_str())
        .collect();
    assert_eq!(text, "proxy reached", "{chunks:?}");

    // The call's lists replace the agent's; deny wins over allow; metadata stays
    // blocked even when allowed.
    let both = create(
        &d,
        json!({
            "agent": "walled",
            "networkAllowOut": ["10.213.0.0/16", "169.254.0.0/16"],
            "networkDenyOut": ["10.213.1.0/30"],
        }),
    )
    .await;
    assert_eq!(reach(&d, &both, &b.addr, PORT).await, greeting(&b));
    assert_eq!(reach(&d, &both, &a.addr, PORT).await, None);
    assert_eq!(reach(&d, &both, &metadata.addr, PORT).await, None);

    // Bad entries are refused before anything is made.
    for (field, entry, says) in [
        ("networkAllowOut", "10.0.0.0/33", "prefix length"),
        ("networkDenyOut", "*.example.com", "wildcards"),
        ("networkAllowOut", "no such host.example", "neither"),
        (
            "networkAllowOut",
            "name-that-does-not-resolve.invalid",
            "cannot resolve",
        ),
    ] {
        let (status, body) = d
            .call(
                "POST",
                "/v1/sandboxes",
                Some(json!({ "agent": "test", field: [entry] })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{entry}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says) && message.contains(field), "{body}");
    }

    // Deleting sandboxes takes their rules with them.
    for sandbox in [&open, &denied, &walled, &both] {
        d.delete_sandbox(sandbox).await;
    }
    let rules = Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .expect("iptables -S");
    let rules = String::from_utf8_lossy(&rules.stdout);
    for sandbox in [&denied, &walled, &both] {
        let id = sandbox.trim_start_matches("sb_");
        assert!(
            !rules.contains(id),
            "rules of {sandbox} were left:\n{rules}"
        );
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn allowed_domain_names_resolve_to_the_allowed_addresses_only() {
    let c = Peer::start("c", "10.213.3");
    let e = Peer::start("e", "10.213.4");
    // The daemon resolves names as the host does; give it a hosts file of its own in
    // a mount namespace of its own, so the machine's stays untouched.
    let dir = tempfile::tempdir().expect("dir");
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1 localhost\n{} peer-c.sandboxd.test\n{} peer-e.sandboxd.test\n",
            c.addr, e.addr
        ),
    )
    .expect("hosts");
    let d = Daemon::start_with(Options {
        wrapper: vec![
            "unshare".into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
                hosts.display()
            ),
        ],
        // Disks are mounted where the daemon runs, and this one's mount namespace is
        // not the engine's (see the README on --disk-mb).
        args: vec!["--disk-mb".into(), "0".into()],
        ..Options::default()
    })
    .await;

    let sandbox = create(
        &d,
        json!({
            "agent": "test",
            "networkAllowOut": ["peer-c.sandboxd.test"],
            "networkDenyOut": ["peer-e.sandboxd.test"],
        }),
    )
    .await;
    // By name: the sandbox resolves the allowed name to the allowed address.
    assert_eq!(
        reach(&d, &sandbox, "peer-c.sandboxd.test", PORT).await,
        greeting(&c)
    );
    assert_eq!(reach(&d, &sandbox, &c.addr, PORT).await, greeting(&c));
    assert_eq!(reach(&d, &sandbox, &e.addr, PORT).await, None);

    // A deny list by name, with no allow list: everything but that name.
    let open = create(
        &d,
        json!({ "agent": "test", "networkDenyOut": ["peer-e.sandboxd.test"] }),
    )
    .await;
    assert_eq!(reach(&d, &open, &c.addr, PORT).await, greeting(&c));
    assert_eq!(reach(&d, &open, &e.addr, PORT).await, None);
    d.delete_sandbox(&sandbox).await;
    d.delete_sandbox(&open).await;
    d.assert_no_leaks();
}
