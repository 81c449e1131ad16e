//! The sandbox network: one bridge, shared by every daemon of the host, with traffic
//! between its containers off.
//!
//! Docker (20.10 at least) lets two networks have one name when the create call does
//! not ask `CheckDuplicate`, and from then on every lookup by name is "ambiguous". So
//! the network is never looked up by name alone and never created in a retry loop:
//! daemons of one host take a file lock around find-or-create, every network of the
//! name is listed (an exact match; the engine's name filter matches substrings), and
//! duplicates, however they came to be, are settled the same way by every daemon: the
//! oldest (then the smallest id) is the one, the others are removed when nothing is
//! attached to them. Callers keep the id and use it from then on.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};

use super::{Engine, EngineError};

/// The label on networks this daemon creates.
const LABEL: (&str, &str) = ("sandboxd", "network");
/// How long find-or-create waits for another daemon holding the host's lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The sandbox network as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The engine's id (stable; names can be ambiguous).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The host's address on it: where sandboxes reach the host.
    pub gateway: Ipv4Addr,
    /// The bridge interface on the host.
    pub bridge: String,
}

/// One network of the wanted name, as listed.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    /// Creation time as `(seconds part, nanoseconds)`, comparable.
    created: (String, u32),
}

impl Engine {
    /// Finds the bridge network `name`, settling duplicates, or creates it; returns
    /// its id, gateway and bridge. Safe to call from several daemons at once.
    pub async fn ensure_network(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        let _lock = HostLock::acquire(name).await?;
        let id = match self.settle_networks(name).await? {
            Some(id) => id,
            None => {
                self.create_network(name).await?;
                // Another host's daemon (sharing this engine, not this lock) may have
                // created one too: settle again, as it will.
                self.settle_networks(name).await?.ok_or_else(|| {
                    EngineError::Refused(format!(
                        "network {name} vanished right after it was created"
                    ))
                })?
            }
        };
        self.network_info(&id).await
    }

    /// The network with this id as it is now (`NotFound` once it was removed).
    pub async fn network_info(&self, id: &str) -> Result<NetworkInfo, EngineError> {
        let network = self.inspect_network(id).await?;
        let name = network.name.clone().unwrap_or_default();
        let id = network.id.clone().unwrap_or_else(|| id.to_owned());
        // Docker names a bridge after its network's id unless told otherwise.
        let bridge = network
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
            .unwrap_or_else(|| format!("br-{}", &id[..12.min(id.len())]));
        let from_ipam = network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.gateway.as_deref())
            .find_map(|g| g.parse().ok());
        let gateway = match from_ipam {
            Some(gateway) => gateway,
            // A fresh engine's default bridge lists no gateway: ask the interface.
            None => interface_address(&bridge).await.ok_or_else(|| {
                EngineError::Refused(format!(
                    "network {name} has no IPv4 gateway address (none in its IPAM \
                     config, none on {bridge})"
                ))
            })?,
        };
        Ok(NetworkInfo {
            id,
            name,
            gateway,
            bridge,
        })
    }

    /// The IPv4 addresses of the containers attached to the network with this id.
    pub async fn network_addresses(
        &self,
        id: &str,
    ) -> Result<std::collections::HashSet<String>, EngineError> {
        let network = self.inspect_network(id).await?;
        Ok(network
            .containers
            .unwrap_or_default()
            .values()
            .filter_map(|c| c.ipv4_address.as_deref())
            .filter_map(|a| a.split('/').next())
            .map(str::to_owned)
            .collect())
    }

    async fn inspect_network(
        &self,
        id: &str,
    ) -> Result<bollard::models::NetworkInspect, EngineError> {
        super::within(super::QUICK, || format!("inspecting network {id}"), async {
            Ok(self
                .docker
                .inspect_network(id, None::<InspectNetworkOptions>)
                .await?)
        })
        .await
    }

    /// Lists the networks named exactly `name`, keeps the oldest and removes the
    /// others that nothing is attached to; returns the one kept.
    async fn settle_networks(&self, name: &str) -> Result<Option<String>, EngineError> {
        let listed = super::within(super::QUICK, || format!("listing networks {name}"), async {
            Ok(self
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
                }))
                .await?)
        })
        .await?;
        let mut candidates: Vec<Candidate> = listed
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                Some(Candidate {
                    id: n.id?,
                    created: created_key(n.created.as_deref().unwrap_or_default()),
                })
            })
            .collect();
        candidates.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        let Some((keep, extra)) = candidates.split_first() else {
            return Ok(None);
        };
        for other in extra {
            self.remove_duplicate(name, &other.id).await;
        }
        Ok(Some(keep.id.clone()))
    }

    /// Removes a duplicate network unless containers use it (those are left alone:
    /// removing would cut them off; they end with their sandboxes).
    async fn remove_duplicate(&self, name: &str, id: &str) {
        match self.inspect_network(id).await {
            Ok(n) if n.containers.as_ref().is_some_and(|c| !c.is_empty()) => {
                tracing::warn!("network {name}: duplicate {id} is in use; not removing it");
                return;
            }
            Ok(_) => {}
            Err(_) => return, // already gone
        }
        match self.docker.remove_network(id).await {
            Ok(()) => tracing::info!("network {name}: removed duplicate {id}"),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => {}
                other => tracing::warn!("network {name}: duplicate {id} not removed: {other}"),
            },
        }
    }

    async fn create_network(&self, name: &str) -> Result<(), EngineError> {
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            )])),
            labels: Some(HashMap::from([(LABEL.0.to_owned(), LABEL.1.to_owned())])),
            ..Default::default()
        };
        super::within(
            super::LIFECYCLE,
            || format!("creating network {name}"),
            async { Ok(self.docker.create_network(request).await?) },
        )
        .await?;
        tracing::info!("network {name}: created");
        Ok(())
    }
}

/// Docker's `Created` (RFC 3339 with 0–9 fraction digits) as a key that sorts by time
/// for the timestamps of one engine (which all share its zone).
fn created_key(created: &str) -> (String, u32) {
    let (seconds, rest) = created.split_once('.').unwrap_or((created, ""));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let nanos = format!("{digits:0<9}")[..9].parse().unwrap_or(0);
    (seconds.trim_end_matches('Z').to_owned(), nanos)
}

/// The first IPv4 address of a host interface (`ip -4 -o addr show dev IF`).
async fn interface_address(interface: &str) -> Option<Ipv4Addr> {
    let out = tokio::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
}

/// An exclusive `flock` on a file shared by every daemon of the host, held while one
/// of them finds or creates the network.
#[derive(Debug)]
struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    async fn acquire(name: &str) -> Result<Self, EngineError> {
        let dir = ["/run/lock", "/var/lock"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("sandboxd-network-{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::Refused(format!("opening {}: {e}", path.display())))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if locked == 0 {
                return Ok(Self { _file: file });
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Refused(format!(
                    "another sandboxd held {} for {LOCK_WAIT:?} while setting up the \
                     network {name}",
                    path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::created_key;

    #[test]
    fn creation_times_sort_by_time_whatever_their_precision() {
        let a = created_key("2026-11-29T18:45:12.5Z");
        let b = created_key("2026-11-29T18:45:12.123456789Z");
        let c = created_key("2026-11-29T18:45:13Z");
        assert!(b < a && a < c, "{a:?} {b:?} {c:?}");
        assert_eq!(created_key("2026-11-29T18:45:12.000000001+00:00").1, 1);
    }
}
