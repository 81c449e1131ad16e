//! envd's `EntryInfo`: how a file entry of sandbox-init is reported to the SDKs, by
//! the filesystem calls and the watches alike.

use sandbox_init::protocol::{EntryKind, FileEntry};
use serde_json::{json, Value};

/// envd's `EntryInfo` in protojson. As envd, a symlink has its target's type (a file
/// or a directory) with `isSymlink` set, which newer SDKs read to show it as a link;
/// one that dangles, or points at anything else, is a link.
pub fn entry_info(entry: &FileEntry) -> Value {
    let followed = match (entry.kind, entry.target_kind) {
        (EntryKind::Symlink, Some(target @ (EntryKind::File | EntryKind::Dir))) => target,
        (kind, _) => kind,
    };
    let kind = match followed {
        EntryKind::File => "FILE_TYPE_FILE",
        EntryKind::Dir => "FILE_TYPE_DIRECTORY",
        EntryKind::Symlink => "FILE_TYPE_SYMLINK",
        EntryKind::Other => "FILE_TYPE_UNSPECIFIED",
    };
    let mut info = json!({
        "name": entry.name,
        "type": kind,
        "path": entry.path,
        "size": entry.size.to_string(),
        "mode": entry.mode & 0o777,
        "permissions": permissions(entry),
        "owner": entry.owner,
        "group": entry.group,
        "modifiedTime": crate::rfc3339::format_ms(entry.modified_ms),
    });
    if let Some(target) = &entry.symlink_target {
        info["symlinkTarget"] = json!(absolute_target(&entry.path, target));
    }
    if entry.kind == EntryKind::Symlink {
        info["isSymlink"] = json!(true);
    }
    if !entry.metadata.is_empty() {
        info["metadata"] = json!(entry.metadata);
    }
    info
}

/// A symlink's target as envd reports it: absolute, a relative target taken from the
/// link's directory, `.` and `..` folded lexically (the target need not exist).
fn absolute_target(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let base = if target.starts_with('/') {
        ""
    } else {
        link.rsplit_once('/').map_or("", |(dir, _)| dir)
    };
    for part in base.split('/').chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The `ls -l` form of an entry's type and permission bits, as Go prints a file mode.
fn permissions(entry: &FileEntry) -> String {
    let kind = match entry.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'L',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let bits = "rwxrwxrwx";
    let mut out = String::from(kind);
    for (i, c) in bits.chars().enumerate() {
        out.push(if entry.mode & (1 << (8 - i)) != 0 {
            c
        } else {
            '-'
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_reported_absolute() {
        let t = |link, target| absolute_target(link, target);
        assert_eq!(t("/home/user/link", "one.txt"), "/home/user/one.txt");
        assert_eq!(
            t("/home/user/link", "tree/one.txt"),
            "/home/user/tree/one.txt"
        );
        assert_eq!(t("/home/user/a/link", "../b/./c"), "/home/user/b/c");
        assert_eq!(t("/home/user/link", "/etc/hosts"), "/etc/hosts");
        assert_eq!(t("/link", "../../x"), "/x");
    }

    #[test]
    fn entries_map_to_envd_entry_info() {
        let entry = FileEntry {
            name: "a.txt".into(),
            path: "/home/user/a.txt".into(),
            kind: EntryKind::File,
            size: 12,
            mode: 0o644,
            owner: "user".into(),
            group: "user".into(),
            modified_ms: 1_000,
            symlink_target: None,
            target_kind: None,
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        let info = entry_info(&entry);
        assert_eq!(info["type"], "FILE_TYPE_FILE");
        assert_eq!(info["size"], "12");
        assert_eq!(info["permissions"], "-rw-r--r--");
        assert_eq!(info["modifiedTime"], "1970-01-01T00:00:01.000Z");
        assert_eq!(info["metadata"], json!({"k": "v"}));
        let dir = FileEntry {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..entry.clone()
        };
        assert_eq!(permissions(&dir), "drwxr-xr-x");
        assert!(info.get("isSymlink").is_none());

        let link = |target_kind| FileEntry {
            kind: EntryKind::Symlink,
            symlink_target: Some("d".into()),
            target_kind,
            ..entry.clone()
        };
        let to_dir = entry_info(&link(Some(EntryKind::Dir)));
        assert_eq!(to_dir["type"], "FILE_TYPE_DIRECTORY");
        assert_eq!(to_dir["isSymlink"], true);
        assert_eq!(to_dir["symlinkTarget"], "/home/user/d");
        let dangling = entry_info(&link(None));
        assert_eq!(dangling["type"], "FILE_TYPE_SYMLINK");
        assert_eq!(dangling["isSymlink"], true);
    }
}
