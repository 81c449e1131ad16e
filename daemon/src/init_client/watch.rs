//! Directory watches (see `Request::Watch`): the events of one watch, as sandbox-init
//! reads them. Dropping a [`Watch`] closes its connection, which ends the watch.

use sandbox_init::protocol::{Frame, Reply, Request, WatchEvent, WatchRequest};

use super::conn::frame_name;
use super::{unexpected, Conn, InitClient, InitError, CALL_DEADLINE};

/// A running watch.
#[derive(Debug)]
pub struct Watch {
    conn: Conn,
}

impl Watch {
    /// The next batch of events; `None` once the watched directory went away.
    pub async fn next(&mut self) -> Result<Option<Vec<WatchEvent>>, InitError> {
        match self.conn.recv().await? {
            Some(Frame::Message(Reply::WatchEvents { events })) => Ok(Some(events)),
            Some(Frame::Message(Reply::End)) => Ok(None),
            Some(Frame::Message(Reply::Error { kind, message })) => {
                Err(InitError::Remote { kind, message })
            }
            Some(other) => Err(InitError::Protocol(format!(
                "unexpected {} during a watch",
                frame_name(&other)
            ))),
            None => Err(InitError::Closed("the watch's connection closed".into())),
        }
    }
}

impl InitClient {
    /// Starts watching a directory.
    pub async fn watch(&self, request: WatchRequest) -> Result<Watch, InitError> {
        let started = async {
            let mut conn = self.connect().await?;
            conn.send(&Frame::Message(Request::Watch(request))).await?;
            match conn.recv_reply().await? {
                Reply::Watching => Ok(Watch { conn }),
                other => Err(unexpected(&other)),
            }
        };
        tokio::time::timeout(CALL_DEADLINE, started)
            .await
            .map_err(|_| InitError::Protocol("no reply to a watch".into()))?
    }
}
