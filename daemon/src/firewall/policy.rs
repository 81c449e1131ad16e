//! Egress policies: the entries of `networkAllowOut` / `networkDenyOut` parsed
//! (IPv4 addresses and networks, IPv6 ones, domain names) and resolved into the
//! networks a sandbox may or may not reach.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

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
