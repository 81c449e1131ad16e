//! The egress firewall: what a sandbox may reach over the network.
//!
//! Every sandbox sits on the `sandboxd` bridge. Two shared iptables chains hold the
//! rules, so several daemons on one host (each with its own state directory) share
//! them without stepping on each other:
//!
//! - `SANDBOXD-INPUT`, jumped to from `INPUT` for traffic entering from the bridge:
//!   the host itself. Replies and each daemon's model-proxy port are accepted,
//!   everything else is rejected, so no other host service is reachable.
//! - `SANDBOXD-EGRESS`, jumped to from `DOCKER-USER` for traffic forwarded from the
//!   bridge: cloud metadata ranges are rejected for everyone, then each sandbox with
//!   a policy jumps, by its address, to a chain of its own (`SBX-<instance>-<id>`)
//!   holding its deny rules, its allow rules and, with an allow list, a final reject.
//!
//! A container's address is reused after it is gone, so rules are keyed to sandboxes
//! and cleaned with them; rules for addresses no container holds (left by a daemon
//! that was killed) are swept when a daemon starts, and a new sandbox first clears
//! any rule still naming its address.

mod iptables;
mod policy;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use iptables::{
    args, delete_rule, drop_chain, ensure_chain, ensure_rule, iptables, iptables_in, list_rules,
    restore, word_after,
};
pub use policy::{Net, Policy, Target};

/// The chain for traffic from sandboxes to the host.
const INPUT_CHAIN: &str = "SANDBOXD-INPUT";
/// The chain for traffic from sandboxes to anywhere else.
const EGRESS_CHAIN: &str = "SANDBOXD-EGRESS";
/// Link-local (every cloud's metadata service, 169.254.169.254) and Alibaba's
/// metadata address: never reachable from a sandbox, whatever its policy says.
const METADATA: &[&str] = &["169.254.0.0/16", "100.100.100.200/32"];

/// The firewall could not be set up or changed.
#[derive(Debug, thiserror::Error)]
#[error("egress firewall: {0}")]
pub struct FirewallError(String);

/// The installed firewall of one daemon instance.
#[derive(Debug)]
pub struct Firewall {
    instance: String,
    /// Firewall changes of this daemon, one at a time (they read, then write).
    lock: tokio::sync::Mutex<()>,
    proxy_rule: Vec<String>,
}

impl Firewall {
    /// Sets up the shared chains (idempotently: other daemons may share them) and
    /// opens this daemon's model-proxy port on the gateway.
    pub async fn install(
        instance: &str,
        bridge: &str,
        gateway: Ipv4Addr,
        proxy_port: u16,
    ) -> Result<Self, FirewallError> {
        let comment = format!("sandboxd:{instance}");
        let firewall = Self {
            instance: instance.chars().take(6).collect(),
            lock: tokio::sync::Mutex::new(()),
            proxy_rule: [
                "-p",
                "tcp",
                "-d",
                &format!("{gateway}/32"),
                "--dport",
                &proxy_port.to_string(),
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "ACCEPT",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let _guard = firewall.lock.lock().await;

        // The host: replies, the model proxy, nothing else.
        ensure_chain(INPUT_CHAIN).await?;
        ensure_rule(
            INPUT_CHAIN,
            Some(1),
            &args("-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
        )
        .await?;
        ensure_rule(INPUT_CHAIN, None, &args("-j REJECT")).await?;
        // Ports of daemons that are gone (this instance's earlier run, or any daemon
        // that was killed): nothing listens there now, so nothing must be let in.
        for rule in list_rules(INPUT_CHAIN).await? {
            let words = args(&rule);
            let Some(tag) = word_after(&words, "--comment") else {
                continue;
            };
            let port = word_after(&words, "--dport").and_then(|p| p.parse::<u16>().ok());
            let address = word_after(&words, "-d")
                .and_then(|d| d.trim_end_matches("/32").parse::<Ipv4Addr>().ok());
            let ours = tag == comment;
            // Each daemon's proxy listens on its own network's gateway: the port is
            // free there, or that address is gone with its network.
            let abandoned = match (address, port) {
                (Some(address), Some(port)) => match std::net::TcpListener::bind((address, port)) {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable,
                },
                _ => false,
            };
            if tag.starts_with("sandboxd:") && (ours || abandoned) {
                delete_rule(&rule).await?;
            }
        }
        ensure_rule(INPUT_CHAIN, Some(1), &firewall.proxy_rule).await?;
        ensure_rule(
            "INPUT",
            Some(1),
            &args(&format!("-i {bridge} -j {INPUT_CHAIN}")),
        )
        .await?;

        // Everywhere else: metadata never, then each sandbox's own policy.
        ensure_chain(EGRESS_CHAIN).await?;
        ensure_rule(
            EGRESS_CHAIN,
            Some(1),
            &args("-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"),
        )
        .await?;
        for (i, net) in METADATA.iter().enumerate() {
            ensure_rule(
                EGRESS_CHAIN,
                Some(2 + i),
                &args(&format!("-d {net} -j REJECT")),
            )
            .await?;
        }
        // Sandboxes never reach each other. Docker drops that traffic (the network's
        // ICC is off), which makes a connection hang; refuse it at once instead.
        ensure_rule(
            EGRESS_CHAIN,
            Some(2 + METADATA.len()),
            &args(&format!("-i {bridge} -o {bridge} -j REJECT")),
        )
        .await?;
        ensure_rule(
            "DOCKER-USER",
            Some(1),
            &args(&format!("-i {bridge} -j {EGRESS_CHAIN}")),
        )
        .await?;
        sweep_gone_bridges().await?;
        drop(_guard);
        Ok(firewall)
    }

    /// The sandbox rules of every daemon: `(address, chain, rule as listed)`.
    async fn jumps(&self) -> Result<Vec<(String, String, String)>, FirewallError> {
        Ok(list_rules(EGRESS_CHAIN)
            .await?
            .into_iter()
            .filter_map(|rule| {
                let words = args(&rule);
                let source = word_after(&words, "-s")?.trim_end_matches("/32").to_owned();
                let target = word_after(&words, "-j")?.to_owned();
                Some((source, target, rule))
            })
            .collect())
    }

    /// Removes rules for addresses that no container holds any more. `in_use` must
    /// be read after this is called: a rule is only installed once its container
    /// runs, so a rule listed here whose address is not in use afterwards is stale.
    pub async fn sweep<F, Fut>(&self, in_use: F) -> Result<usize, FirewallError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<HashSet<String>>>,
    {
        let _guard = self.lock.lock().await;
        let jumps = self.jumps().await?;
        let Some(in_use) = in_use().await else {
            return Ok(0);
        };
        let mut swept = 0;
        for (addr, chain, rule) in jumps {
            if !in_use.contains(&addr) {
                delete_rule(&rule).await?;
                drop_chain(&chain).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// The chain of one sandbox.
    fn chain(&self, sandbox_id: &str) -> String {
        let id = sandbox_id.strip_prefix("sb_").unwrap_or(sandbox_id);
        format!("SBX-{}-{}", self.instance, id)
    }

    /// Applies a sandbox's policy to the container at `addr` whose init has host pid
    /// `pid`. Any rule still naming `addr` (its container is gone: addresses are unique
    /// on the bridge) goes first.
    pub async fn apply(
        &self,
        sandbox_id: &str,
        addr: Ipv4Addr,
        pid: i64,
        policy: &Policy,
    ) -> Result<(), FirewallError> {
        let _guard = self.lock.lock().await;
        let addr_text = addr.to_string();
        for (held, chain, rule) in self.jumps().await? {
            if held == addr_text {
                delete_rule(&rule).await?;
                drop_chain(&chain).await?;
            }
        }
        if policy.is_open() {
            return Ok(());
        }
        let chain = self.chain(sandbox_id);
        let mut script = format!("*filter\n:{chain} - [0:0]\n");
        for net in &policy.deny {
            script.push_str(&format!("-A {chain} -d {net} -j REJECT\n"));
        }
        if let Some(allow) = &policy.allow {
            close_embedded_dns(pid).await?;
            for net in allow {
                script.push_str(&format!("-A {chain} -d {net} -j RETURN\n"));
            }
            script.push_str(&format!("-A {chain} -j REJECT\n"));
        }
        script.push_str(&format!(
            "-A {EGRESS_CHAIN} -s {addr}/32 -j {chain}\nCOMMIT\n"
        ));
        restore(&script).await
    }

    /// Removes a sandbox's rules, if it has any.
    pub async fn release(&self, sandbox_id: &str) -> Result<(), FirewallError> {
        let _guard = self.lock.lock().await;
        let chain = self.chain(sandbox_id);
        for (_, target, rule) in self.jumps().await? {
            if target == chain {
                delete_rule(&rule).await?;
            }
        }
        drop_chain(&chain).await
    }

    /// Closes this daemon's proxy port again (on shutdown).
    pub async fn close(&self) {
        let _guard = self.lock.lock().await;
        let mut rule = vec!["-D".to_owned(), INPUT_CHAIN.to_owned()];
        rule.extend(self.proxy_rule.iter().cloned());
        if let Err(e) = iptables(&rule).await {
            tracing::warn!("{e}");
        }
    }
}

/// Removes the rules that name a bridge interface that no longer exists (its network
/// was removed, and maybe made again with another bridge): they match nothing now,
/// and would pile up.
async fn sweep_gone_bridges() -> Result<(), FirewallError> {
    for chain in ["INPUT", "DOCKER-USER", EGRESS_CHAIN] {
        for rule in list_rules(chain).await? {
            let words = args(&rule);
            let Some(interface) = word_after(&words, "-i") else {
                continue;
            };
            let target = word_after(&words, "-j").unwrap_or_default();
            let ours = chain == EGRESS_CHAIN || target == INPUT_CHAIN || target == EGRESS_CHAIN;
            let gone = !std::path::Path::new("/sys/class/net")
                .join(interface)
                .exists();
            if ours && gone {
                delete_rule(&rule).await?;
            }
        }
    }
    Ok(())
}

/// Closes Docker's embedded DNS server (127.0.0.11, inside the container's own
/// network namespace, so the host firewall never sees it) for the container whose
/// init has host pid `pid`. Under an allow list the sandbox must have no DNS but
/// its pinned names: the embedded server would answer other sandboxes' names and
/// forward any query from the host, past the allow list. Root in the container
/// lacks NET_ADMIN, so it cannot undo this.
async fn close_embedded_dns(pid: i64) -> Result<(), FirewallError> {
    let rule = args("OUTPUT -d 127.0.0.11/32 -j REJECT");
    let check: Vec<String> = ["-C".to_owned()].into_iter().chain(rule.clone()).collect();
    if iptables_in(Some(pid), &check).await.is_ok() {
        return Ok(());
    }
    let insert: Vec<String> = ["-I".to_owned()].into_iter().chain(rule).collect();
    iptables_in(Some(pid), &insert).await.map(|_| ())
}
