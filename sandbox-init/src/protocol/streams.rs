//! The messages of protocol 3's watches and streamed writes (see `Request::Watch` and
//! `Request::WriteStream`), kept beside the older ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FileEntry, UserName};

/// A directory to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// Absolute path of a directory.
    pub path: String,
    /// Watch its whole tree (new subdirectories included).
    #[serde(default)]
    pub recursive: bool,
    /// Attach the entry (as [`Request::Stat`] describes it) to create, write and chmod
    /// events.
    #[serde(default)]
    pub include_entry: bool,
    /// Allow a directory on a network filesystem (NFS, SMB, FUSE); refused otherwise.
    #[serde(default)]
    pub allow_network_mounts: bool,
    /// The account watching (it must be allowed to read the directories).
    #[serde(rename = "as")]
    pub as_user: UserName,
}

/// What happened to a watched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchOp {
    /// Created (or moved in).
    Create,
    /// Written to.
    Write,
    /// Removed.
    Remove,
    /// Renamed (or moved out).
    Rename,
    /// Its permissions or other attributes changed.
    Chmod,
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEvent {
    /// The path relative to the watched directory (`sub/file` in a recursive watch).
    pub name: String,
    /// What happened.
    pub op: WatchOp,
    /// The entry, when asked for and the path still exists.
    #[serde(default)]
    pub entry: Option<FileEntry>,
}

/// One file of a [`Request::WriteStream`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFileSpec {
    /// Absolute path. Missing parent directories are created, owned by the writer.
    pub path: String,
    /// Permission bits for a new file (default 0o644); an existing file keeps its own.
    #[serde(default)]
    pub mode: Option<u32>,
    /// Metadata stored as `user.e2b.<key>` extended attributes (replacing the file's).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::super::{Reply, Request};
    use super::*;

    #[test]
    fn wire_names_are_stable() {
        let json = serde_json::to_string(&Request::Watch(WatchRequest {
            path: "/d".into(),
            recursive: true,
            include_entry: false,
            allow_network_mounts: false,
            as_user: "user".into(),
        }))
        .expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"watch","path":"/d","recursive":true,"include_entry":false,"allow_network_mounts":false,"as":"user"}"#
        );
        let json = serde_json::to_string(&Reply::WatchEvents {
            events: vec![WatchEvent {
                name: "a".into(),
                op: WatchOp::Chmod,
                entry: None,
            }],
        })
        .expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"watch_events","events":[{"name":"a","op":"chmod","entry":null}]}"#
        );
        let json = serde_json::to_string(&Request::StreamFile(StreamFileSpec {
            path: "/f".into(),
            mode: None,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
        }))
        .expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"stream_file","path":"/f","mode":null,"metadata":{"k":"v"}}"#
        );
    }
}
