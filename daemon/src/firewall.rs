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

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use tokio::process::Command;

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

/// An IPv4 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Net {
    /// One address.
    pub fn host(addr: Ipv4Addr) -> Self {
        Self { addr, prefix: 32 }
    }
}

/// One entry of `networkAllowOut` / `networkDenyOut`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IPv4 address or CIDR.
    Net(Net),
    /// An IPv6 address or CIDR: sandboxes have no IPv6 route, so there is nothing
    /// to allow or deny.
    V6,
    /// A domain name, resolved when the sandbox is created.
    Domain(String),
}

impl Target {
    /// Parses an entry: `10.0.0.0/8`, `1.2.3.4`, `2001:db8::/32` or `api.example.com`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix =
                match prefix {
                    None => max,
                    Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                        format!("{entry:?}: the prefix length must be 0 to {max}")
                    })?,
                };
            return Ok(match ip {
                IpAddr::V4(addr) => Target::Net(Net {
                    addr: mask(addr, prefix),
                    prefix,
                }),
                IpAddr::V6(_) => Target::V6,
            });
        }
        if prefix.is_some() {
            return Err(format!("{entry:?} is not an IP network (like 10.0.0.0/8)"));
        }
        if entry.contains('*') {
            return Err(format!(
                "{entry:?}: wildcards cannot be enforced by an address firewall; \
                 list the domain names"
            ));
        }
        let name = entry.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "{entry:?} is neither an IP address, a CIDR nor a domain name"
            ));
        }
        Ok(Target::Domain(name))
    }
}

fn mask(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ipv4Addr::from(bits & mask)
}

/// A sandbox's egress policy with its domain names resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Reachable networks; when `Some`, everything else is not.
    pub allow: Option<Vec<Net>>,
    /// Unreachable networks (winning over `allow`).
    pub deny: Vec<Net>,
    /// `name:address` entries for the container's `/etc/hosts`: allowed domain names
    /// resolve inside the sandbox to exactly the addresses that were allowed.
    pub hosts: Vec<String>,
}

impl Policy {
    /// Whether the sandbox needs rules of its own.
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    /// Parses and resolves the lists. An empty or absent allow list allows everything.
    /// A domain in the allow list must resolve (or the sandbox could reach nothing it
    /// was meant to); a domain in the deny list that does not resolve is nothing to
    /// block and is skipped.
    pub async fn resolve(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let mut policy = Policy::default();
        let mut allowed = Vec::new();
        for entry in allow {
            match Target::parse(entry).map_err(|e| format!("networkAllowOut: {e}"))? {
                Target::Net(net) => allowed.push(net),
                Target::V6 => {}
                Target::Domain(name) => {
                    let addrs = lookup(&name)
                        .await
                        .map_err(|e| format!("networkAllowOut: cannot resolve {name:?}: {e}"))?;
                    for addr in addrs {
                        allowed.push(Net::host(addr));
                        policy.hosts.push(format!("{name}:{addr}"));
                    }
                }
            }
        }
        for entry in deny {
            match Target::parse(entry).map_err(|e| format!("networkDenyOut: {e}"))? {
                Target::Net(net) => policy.deny.push(net),
                Target::V6 => {}
                Target::Domain(name) => match lookup(&name).await {
                    Ok(addrs) => policy.deny.extend(addrs.into_iter().map(Net::host)),
                    Err(e) => tracing::info!("networkDenyOut: {name} does not resolve ({e})"),
                },
            }
        }
        if !allow.is_empty() {
            policy.allow = Some(allowed);
        }
        Ok(policy)
    }
}

/// The IPv4 addresses of a name, as the host resolves it.
async fn lookup(name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let addrs: Vec<Ipv4Addr> = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|e| e.to_string())?
        .filter_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if addrs.is_empty() {
        return Err("no IPv4 address".into());
    }
    Ok(addrs)
}

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
            let ours = tag == comment;
            let abandoned = port.is_some_and(|p| std::net::TcpListener::bind((gateway, p)).is_ok());
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
        ensure_rule(
            "DOCKER-USER",
            Some(1),
            &args(&format!("-i {bridge} -j {EGRESS_CHAIN}")),
        )
        .await?;
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

    /// Applies a sandbox's policy to the container at `addr`. Any rule still naming
    /// `addr` (its container is gone: addresses are unique on the bridge) goes first.
    pub async fn apply(
        &self,
        sandbox_id: &str,
        addr: Ipv4Addr,
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

/// The words of a rule. `iptables -S` quotes comments; ours have no spaces, so
/// unquoting word by word gives back what was given.
fn args(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect()
}

/// The word after `flag` in a rule.
fn word_after<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| w == flag)?;
    words.get(at + 1).map(String::as_str)
}

/// Where a tool lives: on `PATH`, else in the sbin directories that a daemon started
/// with a user's `PATH` may not list.
fn tool(name: &str) -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| name.into())
}

/// Runs `iptables -w` with `args`; its stderr is the error.
async fn iptables(args: &[String]) -> Result<String, FirewallError> {
    let out = Command::new(tool("iptables"))
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
async fn restore(script: &str) -> Result<(), FirewallError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(tool("iptables-restore"))
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

async fn list_rules(chain: &str) -> Result<Vec<String>, FirewallError> {
    let text = iptables(&["-S".to_owned(), chain.to_owned()]).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_owned)
        .collect())
}

/// Deletes a rule given as `iptables -S` printed it (`-A CHAIN ...`).
async fn delete_rule(rule: &str) -> Result<(), FirewallError> {
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

async fn ensure_chain(chain: &str) -> Result<(), FirewallError> {
    match iptables(&["-N".to_owned(), chain.to_owned()]).await {
        Ok(_) => Ok(()),
        Err(e) if e.0.contains("exists") => Ok(()),
        Err(e) => Err(e),
    }
}

async fn drop_chain(chain: &str) -> Result<(), FirewallError> {
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
async fn ensure_rule(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_into_networks_and_names() {
        let net = |s: &str| match Target::parse(s) {
            Ok(Target::Net(n)) => n.to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(net("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(net("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(net(" 0.0.0.0/0 "), "0.0.0.0/0");
        assert_eq!(Target::parse("2001:db8::/32"), Ok(Target::V6));
        assert_eq!(
            Target::parse("API.Example.com."),
            Ok(Target::Domain("api.example.com".into()))
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/x",
            "example.com/24",
            "*.example.com",
            "a b",
            "",
            "-a.com",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[tokio::test]
    async fn policies_resolve_and_keep_deny_winning() {
        let policy = Policy::resolve(
            &["10.0.0.0/8".into(), "localhost".into()],
            &["10.1.0.0/16".into(), "does-not-exist.invalid".into()],
        )
        .await
        .expect("resolves");
        let allow = policy.allow.expect("an allow list");
        assert!(allow.contains(&Net::host(Ipv4Addr::LOCALHOST)), "{allow:?}");
        assert_eq!(policy.deny.len(), 1);
        assert!(policy.hosts.contains(&"localhost:127.0.0.1".to_owned()));
        assert!(Policy::resolve(&[], &[]).await.unwrap().is_open());
        let err = Policy::resolve(&["does-not-exist.invalid".into()], &[])
            .await
            .unwrap_err();
        assert!(err.contains("cannot resolve"), "{err}");
    }
}
