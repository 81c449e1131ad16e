//! Reading the JSON definitions of the agents directory (`<slug>.json`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{check_slug, AgentDef, LoadProblem};

/// The definitions of an agents directory and what was wrong with its bad files.
pub type Loaded = (BTreeMap<String, AgentDef>, Vec<LoadProblem>);

/// Loads every `*.json` in `dir`. A bad file is reported and skipped; the rest load.
/// A missing directory is an empty set. When the directory or one of its files cannot
/// be read at all (out of descriptors, an I/O error, not a directory), the whole load
/// fails: that says nothing about the definitions, and a caller that has loaded them
/// before keeps what it has.
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadProblem> {
    let mut agents = BTreeMap::new();
    let mut problems = Vec::new();
    let unreadable = |path: &Path, e: std::io::Error| LoadProblem {
        path: path.to_owned(),
        message: format!("cannot be read: {e}"),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((agents, problems)),
        Err(e) => return Err(unreadable(dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| unreadable(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let slug = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // Removed since the listing: it is simply not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                problems.push(LoadProblem {
                    path: path.clone(),
                    message: format!("not UTF-8 text: {e}"),
                });
                continue;
            }
            Err(e) => return Err(unreadable(&path, e)),
        };
        let loaded = check_slug(&slug).and_then(|()| AgentDef::parse(&text));
        match loaded {
            Ok(def) => {
                agents.insert(slug, def);
            }
            Err(message) => problems.push(LoadProblem {
                path: path.clone(),
                message,
            }),
        }
    }
    Ok((agents, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_does_not_stop_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("good.json"), r#"{"name": "Good"}"#).expect("write");
        std::fs::write(dir.path().join("bad.json"), r#"{"name": "#).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let (agents, problems) = load_dir(dir.path()).expect("readable");
        assert_eq!(agents.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].path.ends_with("bad.json"));
        assert!(
            problems[0].message.contains("EOF"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_directory_that_cannot_be_read_fails_the_load_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = load_dir(&dir.path().join("none")).expect("a missing directory");
        assert!(missing.0.is_empty() && missing.1.is_empty());
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a directory").expect("write");
        let failed = load_dir(&file).expect_err("a file is no agents directory");
        assert_eq!(failed.path, file);
        assert!(
            failed.message.contains("cannot be read"),
            "{}",
            failed.message
        );
    }
}
