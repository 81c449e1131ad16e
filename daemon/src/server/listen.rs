//! The API listeners (the relay API and the E2B API): connections are bounded, so no
//! local account can take the daemon's descriptors by opening sockets.
//!
//! Each listener holds at most a budget of connections, derived from the daemon's fd
//! limit so the rest stays in reserve for the engine, the store and the sandboxes. A
//! connection gets [`HEADER_AND_IDLE_TIMEOUT`] to send a request's headers and to idle
//! between requests. When the budget is spent, the connection that has waited longest
//! without a request in flight (idle, or still sending headers) is closed to make room:
//! a flood of idle or slow sockets costs a client that means business nothing. Only
//! when every connection is busy serving a request is the newcomer turned away.
//!
//! HTTP/1.1 with upgrades (the terminal's and getHost's WebSockets).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a connection may take to send a request's headers, and may idle between
/// requests, before it is closed.
pub const HEADER_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (out of fds, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Most connections one API listener holds for a soft fd limit of `fd_limit`: an
/// eighth of it (a connection may hold a second descriptor into a sandbox, and the
/// model proxy has its own quarter), between 32 and 4,096.
pub fn connection_budget(fd_limit: u64) -> usize {
    (fd_limit / 8).clamp(32, 4096) as usize
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Open {
    /// Requests in flight: from the handler's call to the end of its response body.
    busy: Arc<AtomicUsize>,
    /// Closes it when it is chosen to make room.
    evict: CancellationToken,
}

/// The open connections of one listener, by the order they were accepted.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Open>,
}

impl Table {
    /// Closes the oldest connection with no request in flight; whether there was one.
    fn evict_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::SeqCst) == 0 && !c.evict.is_cancelled())
            .map(|(id, _)| *id)
            .min();
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(conn) => {
                conn.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from its table when its task ends.
struct Registered {
    table: Arc<Mutex<Table>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.table).open.remove(&self.id);
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        InFlight(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted in flight until it is sent (or
/// dropped): a stream being followed is not an idle connection.
struct Counted {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown`; then open connections finish their
/// requests (the caller bounds how long it waits for that). `name` names the
/// listener in the log.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let mut connections = tokio::task::JoinSet::new();
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("{name}: accept failed: {e}");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let (busy, evict, registered) = {
            let mut t = lock(&table);
            if t.open.len() >= max_connections && !t.evict_idle() {
                // Every connection is serving a request: this one waits for none.
                if !refused_logged {
                    tracing::warn!(
                        "{name}: {max_connections} connections, all busy; new ones are \
                         closed until one ends"
                    );
                    refused_logged = true;
                }
                continue;
            }
            refused_logged = false;
            let id = t.next;
            t.next += 1;
            let conn = Open {
                busy: Arc::new(AtomicUsize::new(0)),
                evict: CancellationToken::new(),
            };
            let handles = (conn.busy.clone(), conn.evict.clone());
            t.open.insert(id, conn);
            let registered = Registered {
                table: table.clone(),
                id,
            };
            (handles.0, handles.1, registered)
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _registered = registered;
            let counted = busy.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let in_flight = InFlight::new(&counted);
                let app = app.clone();
                async move {
                    let response = app
                        .oneshot(request.map(Body::new))
                        .await
                        .unwrap_or_else(|never: Infallible| match never {});
                    Ok::<_, Infallible>(response.map(|inner| {
                        Body::new(Counted {
                            inner,
                            _in_flight: in_flight,
                        })
                    }))
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_AND_IDLE_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = evict.cancelled() => {
                    if busy.load(Ordering::SeqCst) == 0 {
                        // Idle or still sending headers: nothing of it is lost.
                        return;
                    }
                    // A request arrived as it was chosen: that one finishes.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("{name} connection: {e}");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_follows_the_fd_limit() {
        assert_eq!(connection_budget(1024), 128);
        assert_eq!(connection_budget(1 << 20), 4096);
        assert_eq!(connection_budget(64), 32);
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let mut table = Table::default();
        for id in 0..3 {
            table.open.insert(
                id,
                Open {
                    busy: Arc::new(AtomicUsize::new(0)),
                    evict: CancellationToken::new(),
                },
            );
        }
        table.open[&0].busy.store(1, Ordering::SeqCst);
        let second = table.open[&1].evict.clone();
        assert!(table.evict_idle());
        assert!(second.is_cancelled(), "the oldest idle one goes first");
        assert!(!table.open[&0].evict.is_cancelled(), "a busy one stays");
        assert!(table.evict_idle());
        assert!(!table.evict_idle(), "only busy connections are left");
        assert_eq!(table.open.len(), 1);
    }
}
