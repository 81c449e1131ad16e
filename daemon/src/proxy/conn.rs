//! Connections to the proxy: who may hold one, how many, and for how long.
//!
//! Only a sandbox's own address is served (anything else on the sandbox network is
//! closed at once); each sandbox holds at most [`PER_SANDBOX_CONNECTIONS`]. The first
//! [`RESERVED_PER_SANDBOX`] of a sandbox are its own; the rest come from a budget
//! shared by all, given to [`serve`] (derived from the daemon's fd limit), so sandboxes
//! that hold all they may never take a quiet sandbox's model calls. Excess connections
//! are closed as soon as they are accepted, so a flood costs the daemon one
//! short-lived fd each and never the fds the API, Docker and sandbox-init sockets need;
//! the log says so at most every [`REFUSALS_LOGGED_EVERY`].
//! Connections speak HTTP/1.1 only (what the runtimes use), with one timeout for a
//! request's headers and for idling between requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{forward, lock, ModelProxy};

/// Connections one sandbox may hold at once. The CLI keeps a few keep-alive
/// connections (its main loop, parallel subagents, token counting); 32 leaves room for
/// that while a sandbox opening thousands costs the daemon 32 fds.
pub const PER_SANDBOX_CONNECTIONS: usize = 32;
/// Connections every sandbox may hold whatever the others hold: a CLI's main loop and
/// a few parallel calls.
pub const RESERVED_PER_SANDBOX: usize = 4;
/// How often the log reports connections closed for want of budget.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request's headers, and may idle between
/// requests, before it is closed. The CLI reconnects transparently after an idle close.
pub const HEADER_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer of a connection (hyper's default is ~400 KiB): bodies stream through,
/// so a small buffer only costs a few more reads.
const READ_BUFFER: usize = 64 * 1024;
/// Pause after a failed accept (out of fds, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long open connections get to finish their request after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// The budget of proxy connections the sandboxes share (beyond the few each keeps) for
/// a soft fd limit of `fd_limit`: a quarter of it (each connection may hold a second
/// fd upstream), at most 1,024.
pub fn connection_budget(fd_limit: u64) -> usize {
    (fd_limit / 4).clamp(16, 1024) as usize
}

/// Connections per source address.
#[derive(Debug, Default)]
pub(super) struct PerSource(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
struct Slot {
    proxy: Arc<ModelProxy>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.proxy.per_source.0);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A slot for one more connection from `ip`, and how many it held before.
fn take_slot(proxy: &Arc<ModelProxy>, ip: IpAddr) -> Option<(Slot, usize)> {
    let mut counts = lock(&proxy.per_source.0);
    let n = counts.entry(ip).or_default();
    if *n >= PER_SANDBOX_CONNECTIONS {
        return None;
    }
    let before = *n;
    *n += 1;
    Some((
        Slot {
            proxy: proxy.clone(),
            ip,
        },
        before,
    ))
}

/// Counts connections closed for want of budget and logs them now and then.
struct Refusals {
    since: usize,
    last: Option<std::time::Instant>,
}

impl Refusals {
    fn note(&mut self, max_connections: usize) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < REFUSALS_LOGGED_EVERY)
        {
            return;
        }
        tracing::warn!(
            "model proxy: {} connection(s) closed: the shared budget of {max_connections}              is in use (each sandbox keeps {RESERVED_PER_SANDBOX} of its own)",
            self.since
        );
        self.since = 0;
        self.last = Some(std::time::Instant::now());
    }
}

/// Accepts and serves connections until `shutdown`, then gives open ones
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    proxy: Arc<ModelProxy>,
    listener: tokio::net::TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let total = Arc::new(Semaphore::new(max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut refusals = Refusals {
        since: 0,
        last: None,
    };
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("model proxy: accept failed: {e}");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let ip = peer.ip();
        // Closing excess connections here (by dropping them) is the whole defence
        // against a flood: nothing of theirs is read or kept.
        if proxy.sandbox_at(ip).is_none() {
            tracing::debug!(%peer, "model proxy: connection from no sandbox's address closed");
            continue;
        }
        let Some((slot, held)) = take_slot(&proxy, ip) else {
            tracing::debug!(%peer, "model proxy: {PER_SANDBOX_CONNECTIONS} connections from this sandbox; closed");
            continue;
        };
        let permit = if held < RESERVED_PER_SANDBOX {
            None
        } else {
            match total.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    refusals.note(max_connections);
                    continue;
                }
            }
        };
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(forward::handle(proxy, ip, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_AND_IDLE_TIMEOUT)
                .max_buf_size(READ_BUFFER);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "model proxy connection: {e}");
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("model proxy: connections still open after {SHUTDOWN_GRACE:?}; closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_follows_the_fd_limit() {
        assert_eq!(connection_budget(1024), 256);
        assert_eq!(connection_budget(1 << 20), 1024);
        assert_eq!(connection_budget(20), 16);
    }

    #[test]
    fn each_address_holds_a_bounded_number_of_connections() {
        let proxy = ModelProxy::new(crate::proxy::Upstreams::default(), None);
        let a: IpAddr = "10.0.0.2".parse().expect("ip");
        let b: IpAddr = "10.0.0.3".parse().expect("ip");
        let held: Vec<_> = (0..PER_SANDBOX_CONNECTIONS)
            .map(|_| take_slot(&proxy, a).expect("under the cap").0)
            .collect();
        assert!(take_slot(&proxy, a).is_none());
        assert!(
            take_slot(&proxy, b).is_some(),
            "another sandbox is not affected"
        );
        drop(held);
        assert!(take_slot(&proxy, a).is_some());
        assert!(
            lock(&proxy.per_source.0).is_empty(),
            "released slots leave no entry"
        );
    }
}
