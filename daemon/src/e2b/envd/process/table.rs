//! The processes a sandbox runs through envd, and what flows to and from each: the
//! events its streams receive and the controls its clients send.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sandbox_init::protocol::PtySize;
use tokio::sync::mpsc;

use super::super::connect::{Code, RpcError};
use super::{ProcessConfig, Selector, FINISH_WITHIN, MAX_PROCESSES, MAX_STREAMS, RETAIN};
use crate::sandbox::Sandbox;

/// The processes of every sandbox.
#[derive(Debug, Default)]
pub struct Processes {
    by_sandbox: Mutex<HashMap<String, Arc<Table>>>,
}

#[derive(Debug)]
pub(super) struct Table {
    pub(super) sandbox: Arc<Sandbox>,
    procs: Mutex<BTreeMap<u32, Arc<Proc>>>,
    /// One permit per running process, taken before it is spawned: concurrent starts
    /// cannot pass the cap between a count and a spawn.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Processes {
    pub(super) fn table(&self, sandbox: &Arc<Sandbox>) -> Arc<Table> {
        let mut map = self.by_sandbox.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| !t.sandbox.deleted.is_cancelled());
        map.entry(sandbox.id.clone())
            .or_insert_with(|| {
                Arc::new(Table {
                    sandbox: sandbox.clone(),
                    procs: Mutex::new(BTreeMap::new()),
                    slots: Arc::new(tokio::sync::Semaphore::new(MAX_PROCESSES)),
                })
            })
            .clone()
    }
}

impl Table {
    pub(super) fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Arc<Proc>>> {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs.retain(|_, p| p.ended_at().is_none_or(|t| t.elapsed() < RETAIN));
        procs
    }

    /// A place for one more running process, held until it ends.
    pub(super) fn reserve(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RpcError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            RpcError::new(
                Code::ResourceExhausted,
                format!("at most {MAX_PROCESSES} processes per sandbox"),
            )
        })
    }

    pub(super) fn find(&self, selector: &Selector) -> Result<Arc<Proc>, RpcError> {
        let procs = self.procs();
        let found = match (selector.pid, &selector.tag) {
            (Some(pid), _) => procs.get(&pid).cloned(),
            (None, Some(tag)) => procs
                .values()
                .find(|p| p.tag.as_deref() == Some(tag.as_str()))
                .cloned(),
            (None, None) => return Err(RpcError::invalid("process: give a pid or a tag")),
        };
        found.ok_or_else(|| RpcError::new(Code::NotFound, "process not found"))
    }
}

/// What a process sends its streams.
#[derive(Debug, Clone)]
pub(super) enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Terminal output of a PTY process.
    Pty(Vec<u8>),
    /// It ended (`EndEvent` JSON).
    End(serde_json::Value),
    /// Its stream fails (deadline, sandbox gone, protocol).
    Failed(RpcError),
}

/// What a client asks of a running process.
#[derive(Debug)]
pub(super) enum Control {
    /// Bytes for its stdin, or typed into its terminal.
    Stdin(Vec<u8>),
    CloseStdin,
    Signal(i32),
    /// A new terminal size (a PTY process).
    Resize(PtySize),
}

#[derive(Debug)]
pub(super) struct Proc {
    pub(super) pid: u32,
    pub(super) tag: Option<String>,
    pub(super) config: ProcessConfig,
    /// Started with stdin open.
    pub(super) stdin: bool,
    /// Started on a terminal: its output is `pty` data, its input `pty` input.
    pub(super) pty: bool,
    pub(super) control: mpsc::Sender<Control>,
    /// Cancelled by a SIGKILL: the owner drops the connection (killing the group)
    /// even while it waits on a slow stream.
    pub(super) killed: tokio_util::sync::CancellationToken,
    pub(super) state: Mutex<ProcState>,
}

#[derive(Debug, Default)]
pub(super) struct ProcState {
    subscribers: Vec<mpsc::Sender<Event>>,
    /// The last event (end or failure), once it ended.
    outcome: Option<(Event, Instant)>,
}

impl Proc {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn ended_at(&self) -> Option<Instant> {
        self.lock().outcome.as_ref().map(|(_, at)| *at)
    }

    /// Attaches a stream; the outcome instead when it has ended.
    pub(super) fn subscribe(&self) -> Result<mpsc::Receiver<Event>, Event> {
        let mut state = self.lock();
        if let Some((outcome, _)) = &state.outcome {
            return Err(outcome.clone());
        }
        state.subscribers.retain(|tx| !tx.is_closed());
        if state.subscribers.len() >= MAX_STREAMS {
            return Err(Event::Failed(RpcError::new(
                Code::ResourceExhausted,
                format!("at most {MAX_STREAMS} streams per process"),
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        state.subscribers.push(tx);
        Ok(rx)
    }

    /// Sends output to every attached stream, waiting for slow ones (unless the
    /// sandbox goes away or the process is killed meanwhile).
    pub(super) async fn publish(&self, event: Event, sandbox: &Sandbox) {
        let subscribers = self.lock().subscribers.clone();
        for tx in subscribers {
            tokio::select! {
                _ = tx.send(event.clone()) => {}
                () = sandbox.deleted.cancelled() => return,
                () = self.killed.cancelled() => return,
            }
        }
    }

    /// Records the outcome and tells every stream (a stream too slow to take it
    /// within [`FINISH_WITHIN`] is dropped: its client sees the stream break).
    pub(super) async fn finish(&self, event: Event) {
        let subscribers = {
            let mut state = self.lock();
            state.outcome = Some((event.clone(), Instant::now()));
            std::mem::take(&mut state.subscribers)
        };
        for tx in subscribers {
            let _ = tx.send_timeout(event.clone(), FINISH_WITHIN).await;
        }
    }
}
