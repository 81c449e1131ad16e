//! Create's network options (`allow_internet_access`, `network{allowOut, denyOut,
//! …}`) mapped onto the daemon's egress policy.
//!
//! E2B lets `allowOut` win over `denyOut`; the daemon's firewall has an allow list
//! (when given, nothing else is reachable) and a deny list that wins over it. So:
//! - nothing denied: everything is reachable (`allowOut` changes nothing);
//! - all traffic denied (`0.0.0.0/0`, or `allow_internet_access: false`): exactly
//!   `allowOut` is reachable (addresses, networks, domain names);
//! - some networks denied: those are unreachable; an `allowOut` entry inside one of
//!   them (or a domain name, which cannot be checked) cannot be expressed: 400.
//!
//! `allowPublicTraffic: false` makes the sandbox's getHost ports answer only requests
//! with its traffic access token. Options the daemon has no counterpart for
//! (`maskRequestHost`, `egressProxy`, transform `rules`, and create's `mcp`, `iam`,
//! `volumeMounts`) are refused with a 400 naming them, never silently ignored.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::ControlError;
use crate::firewall::Target;
use crate::sandbox::PortAccess;

/// E2B's `SandboxNetworkConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Network {
    allow_out: Option<Vec<String>>,
    deny_out: Option<Vec<String>>,
    allow_public_traffic: Option<bool>,
    mask_request_host: Option<String>,
    egress_proxy: Option<serde_json::Value>,
    rules: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The egress lists of a create call (`None`: the template's own apply).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Egress {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// Options of create that have no counterpart here, checked before anything starts.
pub(super) fn refuse_unsupported(
    network: Option<&Network>,
    mcp: Option<&serde_json::Value>,
    iam: Option<&serde_json::Value>,
    volume_mounts: Option<&serde_json::Value>,
) -> Result<(), ControlError> {
    let set = |v: Option<&serde_json::Value>| {
        v.is_some_and(|v| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        })
    };
    let unsupported = |what: &str| {
        Err(ControlError::bad_request(format!(
            "{what} is not supported by sandboxd"
        )))
    };
    if set(mcp) {
        return unsupported("mcp (an MCP gateway in the sandbox)");
    }
    if iam
        .and_then(|i| i.get("tokens"))
        .is_some_and(|t| set(Some(t)))
    {
        return unsupported("iam (workload identity tokens)");
    }
    if set(volume_mounts) {
        return unsupported("volumeMounts (E2B volumes)");
    }
    let Some(network) = network else {
        return Ok(());
    };
    if network.mask_request_host.is_some() {
        return unsupported("network.maskRequestHost");
    }
    if set(network.egress_proxy.as_ref()) {
        return unsupported("network.egressProxy");
    }
    if network.rules.as_ref().is_some_and(|r| !r.is_empty()) {
        return unsupported("network.rules (request transforms)");
    }
    Ok(())
}

/// Who may reach the sandbox's ports through getHost (see the module).
pub(super) fn port_access(network: Option<&Network>) -> PortAccess {
    match network.and_then(|n| n.allow_public_traffic) {
        Some(false) => PortAccess::Token,
        _ => PortAccess::Public,
    }
}

/// The egress lists for `allow_internet_access` and `network` (see the module).
pub(super) fn egress(
    internet: Option<bool>,
    network: Option<&Network>,
) -> Result<Egress, ControlError> {
    if network.is_none() && internet != Some(false) {
        return Ok(Egress::default());
    }
    let allow = network
        .and_then(|n| n.allow_out.clone())
        .unwrap_or_default();
    let mut deny = network.and_then(|n| n.deny_out.clone()).unwrap_or_default();
    for (field, list) in [("network.allowOut", &allow), ("network.denyOut", &deny)] {
        for entry in list {
            Target::parse(entry).map_err(|e| ControlError::bad_request(format!("{field}: {e}")))?;
        }
    }
    if internet == Some(false) {
        deny.push("0.0.0.0/0".into());
    }
    let open = || Egress {
        allow: Some(Vec::new()),
        deny: Some(Vec::new()),
    };
    if deny.is_empty() {
        return Ok(open());
    }
    let nets =
        |list: &[String]| -> Vec<Option<(u32, u8)>> { list.iter().map(|e| net(e)).collect() };
    let denied = nets(&deny);
    if denied.iter().any(|n| matches!(n, Some((_, 0)))) {
        // All traffic denied: exactly allowOut is reachable.
        return Ok(if allow.is_empty() {
            Egress {
                allow: Some(Vec::new()),
                deny: Some(vec!["0.0.0.0/0".into()]),
            }
        } else {
            Egress {
                allow: Some(allow),
                deny: Some(Vec::new()),
            }
        });
    }
    for (entry, allowed) in allow.iter().zip(nets(&allow)) {
        let Some(allowed) = allowed else {
            return Err(ControlError::bad_request(format!(
                "network.allowOut: {entry:?} cannot be allowed through a partial denyOut \
                 (sandboxd's firewall lets denyOut win): deny all traffic (0.0.0.0/0) \
                 and list what is allowed instead"
            )));
        };
        if denied.iter().any(|d| d.is_none_or(|d| overlap(d, allowed))) {
            return Err(ControlError::bad_request(format!(
                "network.allowOut: {entry:?} lies in a denyOut network, and sandboxd's \
                 firewall lets denyOut win: deny all traffic (0.0.0.0/0) and list what \
                 is allowed instead"
            )));
        }
    }
    Ok(Egress {
        allow: Some(Vec::new()),
        deny: Some(deny),
    })
}

/// An IPv4 address or network as (address, prefix); `None` for a name (or IPv6).
fn net(entry: &str) -> Option<(u32, u8)> {
    let entry = entry.trim();
    let (addr, prefix) = entry.split_once('/').unwrap_or((entry, "32"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(addr), prefix))
}

/// Whether two networks share an address.
fn overlap((a, pa): (u32, u8), (b, pb): (u32, u8)) -> bool {
    let prefix = pa.min(pb);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(allow: &[&str], deny: &[&str]) -> Network {
        Network {
            allow_out: Some(allow.iter().map(|s| s.to_string()).collect()),
            deny_out: Some(deny.iter().map(|s| s.to_string()).collect()),
            ..Network::default()
        }
    }

    fn lists(e: Egress) -> (Vec<String>, Vec<String>) {
        (e.allow.expect("allow"), e.deny.expect("deny"))
    }

    #[test]
    fn options_map_onto_the_egress_lists() {
        assert_eq!(egress(None, None).unwrap(), Egress::default());
        assert_eq!(egress(Some(true), None).unwrap(), Egress::default());
        let none: Vec<String> = Vec::new();
        let all = vec!["0.0.0.0/0".to_owned()];
        assert_eq!(
            lists(egress(Some(false), None).unwrap()),
            (none.clone(), all.clone())
        );
        let n = network(&["1.1.1.1", "example.com"], &["0.0.0.0/0"]);
        assert_eq!(
            lists(egress(None, Some(&n)).unwrap()),
            (vec!["1.1.1.1".into(), "example.com".into()], none.clone())
        );
        let n = network(&["1.1.1.1"], &[]);
        assert_eq!(
            lists(egress(Some(false), Some(&n)).unwrap()),
            (vec!["1.1.1.1".into()], none.clone())
        );
        assert_eq!(
            lists(egress(None, Some(&n)).unwrap()),
            (none.clone(), none.clone())
        );
        let n = network(&["10.2.0.1"], &["10.1.0.0/16"]);
        assert_eq!(
            lists(egress(None, Some(&n)).unwrap()),
            (none.clone(), vec!["10.1.0.0/16".into()])
        );
        for bad in [
            network(&["10.1.2.3"], &["10.1.0.0/16"]),
            network(&["10.0.0.0/8"], &["10.1.0.0/16"]),
            network(&["example.com"], &["10.1.0.0/16"]),
            network(&[], &["10.0.0.0/40"]),
            network(&["*.example.com"], &["0.0.0.0/0"]),
        ] {
            assert!(egress(None, Some(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_without_a_counterpart_are_refused() {
        let private = Network {
            allow_public_traffic: Some(false),
            ..Network::default()
        };
        assert!(refuse_unsupported(Some(&private), None, None, None).is_ok());
        assert_eq!(port_access(Some(&private)), PortAccess::Token);
        assert_eq!(port_access(None), PortAccess::Public);
        let masked = Network {
            mask_request_host: Some("x".into()),
            ..Network::default()
        };
        assert!(refuse_unsupported(Some(&masked), None, None, None).is_err());
        let public = Network {
            allow_public_traffic: Some(true),
            rules: Some(serde_json::Map::new()),
            ..Network::default()
        };
        assert!(refuse_unsupported(Some(&public), None, None, None).is_ok());
        let empty_iam = serde_json::json!({"tokens": {}});
        assert!(refuse_unsupported(None, None, Some(&empty_iam), None).is_ok());
        let mcp = serde_json::json!({"github": {}});
        assert!(refuse_unsupported(None, Some(&mcp), None, None).is_err());
        let mounts = serde_json::json!([{"name": "v", "path": "/data"}]);
        assert!(refuse_unsupported(None, None, None, Some(&mounts)).is_err());
    }
}
