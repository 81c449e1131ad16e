//! The task that owns one process's sandbox-init connection: it fans the output out
//! to the attached streams, forwards the clients' controls, and ends the process (see
//! the parent module for when).

use std::sync::Arc;

use sandbox_init::protocol::{ExitInfo, Frame, Reply, Request};
use serde_json::json;
use tokio::sync::mpsc;

use super::super::connect::{Code, RpcError};
use super::table::{Control, Event, Proc};
use crate::sandbox::Sandbox;

/// The task owning a process's connection and its place under the cap (see the module).
pub(super) async fn own(
    proc: Arc<Proc>,
    sandbox: Arc<Sandbox>,
    conn: crate::init_client::Conn,
    mut control: mpsc::Receiver<Control>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    // A running process keeps its sandbox from being paused.
    let _awake = sandbox.hold();
    let (mut reader, mut writer) = conn.split();
    // Reading a frame is not cancel-safe: one task reads, this one selects.
    let (frames_tx, mut frames) = mpsc::channel(4);
    let read = tokio::spawn(async move {
        loop {
            let frame = reader.recv().await;
            let last = !matches!(frame, Ok(Some(Frame::Stdout(_) | Frame::Stderr(_))));
            if frames_tx.send(frame).await.is_err() || last {
                return;
            }
        }
    });
    let outcome = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Some(Frame::Stdout(b)))) if proc.pty => proc.publish(Event::Pty(b), &sandbox).await,
                Some(Ok(Some(Frame::Stdout(b)))) => proc.publish(Event::Stdout(b), &sandbox).await,
                Some(Ok(Some(Frame::Stderr(b)))) => proc.publish(Event::Stderr(b), &sandbox).await,
                Some(Ok(Some(Frame::Message(Reply::Exited(exit))))) => break exit_event(&exit),
                Some(Ok(Some(Frame::Message(Reply::Error { message, .. })))) => {
                    break Event::Failed(RpcError::new(Code::Internal, message))
                }
                Some(Ok(Some(_))) => {
                    break Event::Failed(RpcError::new(Code::Internal, "the sandbox broke the protocol"))
                }
                Some(Ok(None)) | None => {
                    break Event::Failed(RpcError::new(Code::Unavailable, "the sandbox stopped"))
                }
                Some(Err(e)) => break Event::Failed(RpcError::from(e)),
            },
            Some(ctl) = control.recv() => {
                let frames = match ctl {
                    // A frame carries at most MAX_FRAME_LEN: stdin goes in chunks.
                    Control::Stdin(data) => data
                        .chunks(sandbox_init::protocol::CHUNK_LEN)
                        .map(|c| Frame::Stdin(c.to_vec()))
                        .collect(),
                    Control::CloseStdin => vec![Frame::Message(Request::CloseStdin)],
                    Control::Signal(signal) => vec![Frame::Message(Request::Signal { signal })],
                    Control::Resize(size) => vec![Frame::Message(Request::Resize { size })],
                };
                for frame in &frames {
                    if let Err(e) = writer.send(frame).await {
                        tracing::debug!(pid = proc.pid, "process input not delivered: {e}");
                        break;
                    }
                }
            }
            () = sandbox.deleted.cancelled() => {
                break Event::Failed(RpcError::new(Code::Unavailable, "the sandbox was killed"))
            }
            () = proc.killed.cancelled() => break exit_event(&ExitInfo {
                signal: Some(libc::SIGKILL),
                ..ExitInfo::default()
            }),
        }
    };
    // Dropping the connection kills the process group if it still runs.
    read.abort();
    drop(writer);
    proc.finish(outcome).await;
}

/// envd's `EndEvent` for an exit.
pub(super) fn exit_event(exit: &ExitInfo) -> Event {
    if exit.timed_out {
        return Event::Failed(RpcError::new(
            Code::DeadlineExceeded,
            "the command's timeout passed: it was killed",
        ));
    }
    let (code, status) = match (exit.code, exit.signal) {
        (Some(code), _) => (code, format!("exit status {code}")),
        (None, Some(signal)) => (-1, format!("signal: {}", signal_name(signal))),
        (None, None) => (-1, "unknown".to_owned()),
    };
    Event::End(json!({
        "exitCode": code,
        "exited": exit.code.is_some(),
        "status": status,
    }))
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGKILL => "killed".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGPIPE => "broken pipe".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::signal;
    use super::*;

    #[test]
    fn exits_become_envd_end_events() {
        let Event::End(end) = exit_event(&ExitInfo {
            code: Some(3),
            ..ExitInfo::default()
        }) else {
            panic!("an end")
        };
        assert_eq!(
            end,
            json!({"exitCode": 3, "exited": true, "status": "exit status 3"})
        );
        let Event::End(end) = exit_event(&ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        }) else {
            panic!("an end")
        };
        assert_eq!(end["status"], "signal: killed");
        assert!(matches!(
            exit_event(&ExitInfo {
                timed_out: true,
                ..ExitInfo::default()
            }),
            Event::Failed(RpcError {
                code: Code::DeadlineExceeded,
                ..
            })
        ));
        assert_eq!(signal(Some(&json!("SIGNAL_SIGKILL"))).expect("ok"), 9);
        assert_eq!(signal(Some(&json!(15))).expect("ok"), 15);
        assert!(signal(None).is_err());
    }
}
