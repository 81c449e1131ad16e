//! The server's side of a request: one reply message, or an error reply.

use std::io::Write;

use super::{write_frame, ErrorKind, Frame, FrameError, Reply};

/// Sends one reply message (the server's side of a request).
pub fn reply(w: &mut impl Write, reply: Reply) -> Result<(), FrameError> {
    write_frame(w, &Frame::Message(reply))
}

/// Sends an error reply; the client may already be gone, so a failure to send is
/// dropped.
pub fn reply_error(w: &mut impl Write, kind: ErrorKind, message: impl Into<String>) {
    let _ = reply(
        w,
        Reply::Error {
            kind,
            message: message.into(),
        },
    );
}
