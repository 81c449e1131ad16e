//! The floors of `docs/ARCHITECTURE.md` hold: every module of each crate imports only
//! what its row there allows, every module has a row, and the rows themselves form no
//! circle. The test reads the tables from the document, so the map and the code cannot
//! drift apart.
//!
//! It reads text, as `../shared/tools/module-cycles` does: `crate::…`, `super::…` and
//! (in sandbox-init) `sandbox_init::…` paths outside comments and `#[cfg(test)]` code,
//! resolved to the top-level module they name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One crate's table: module → the modules it may import.
type Floors = BTreeMap<String, BTreeSet<String>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the daemon crate sits in the workspace")
        .to_path_buf()
}

/// The table that follows `<!-- floors: SRC -->` in the document.
fn floors(doc: &str, src: &str) -> Floors {
    let marker = format!("<!-- floors: {src} -->");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no table marked {marker}"));
    let mut table = Floors::new();
    let rows = doc[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2); // the header and its rule
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [module, imports, _what] = cells[..] else {
            panic!("a floors row has three cells: {row}");
        };
        let imports = imports
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        assert!(
            table.insert(module.to_owned(), imports).is_none(),
            "{module} has two rows in the {src} table"
        );
    }
    assert!(!table.is_empty(), "the {src} table has no rows");
    table
}

/// The module path of a source file relative to its crate's `src`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first names of a path's rest: `a::…` gives `a`, `{a, b::c}` gives `a` and `b`.
fn heads(rest: &str) -> Vec<String> {
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest).to_owned()];
    };
    let mut out = Vec::new();
    let (mut depth, mut item) = (0, String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ident(item.trim()).to_owned());
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            item.push(c);
        }
    }
    out.push(ident(item.trim()).to_owned());
    out.retain(|s| !s.is_empty());
    out
}

/// Each top-level module the file's code names, other than its own.
fn imports(src: &Path, file: &Path, roots: &[&str]) -> BTreeSet<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let here = module_path(rel);
    let text = code(&std::fs::read_to_string(file).expect("readable source"));
    let mut out = BTreeSet::new();
    let mut names = |prefix: Vec<String>, rest: &str| {
        for head in heads(rest) {
            let mut path = prefix.clone();
            path.push(head);
            if let Some(top) = path.first().filter(|t| Some(*t) != here.first()) {
                out.insert(top.clone());
            }
        }
    };
    for root in roots {
        let pattern = format!("{root}::");
        for (at, _) in text.match_indices(&pattern) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &text[at + pattern.len()..];
            if *root == "super" {
                // `super::super::x` climbs once per `super`.
                let mut prefix = here.clone();
                prefix.pop();
                let mut rest = rest;
                while let Some(r) = rest.strip_prefix("super::") {
                    prefix.pop();
                    rest = r;
                }
                names(prefix, rest);
            } else {
                names(Vec::new(), rest);
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What breaks the floors of one crate, one line each.
fn violations(src_rel: &str, roots: &[&str]) -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md is readable");
    let table = floors(&doc, src_rel);
    let src = repo().join(src_rel);
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_path(rel).first().cloned() else {
            continue; // lib.rs and main.rs declare the modules
        };
        let Some(allowed) = table.get(&module) else {
            found.push(format!(
                "{}: module `{module}` has no row in docs/ARCHITECTURE.md",
                rel.display()
            ));
            continue;
        };
        for import in imports(&src, &file, roots) {
            if table.contains_key(&import) && !allowed.contains(&import) {
                found.push(format!(
                    "{}: `{module}` imports `{import}`, which its row does not allow",
                    rel.display()
                ));
            }
        }
    }
    found.extend(circles(&table));
    found
}

/// The rows' own circles: each row may import only modules that come before it in
/// some order of all rows.
fn circles(table: &Floors) -> Vec<String> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    loop {
        let next: Vec<&str> = table
            .iter()
            .filter(|(m, _)| !placed.contains(m.as_str()))
            .filter(|(_, imports)| imports.iter().all(|i| placed.contains(i.as_str())))
            .map(|(m, _)| m.as_str())
            .collect();
        if next.is_empty() {
            break;
        }
        placed.extend(next);
    }
    table
        .iter()
        .filter(|(m, _)| !placed.contains(m.as_str()))
        .map(|(m, imports)| {
            let unknown: Vec<&String> =
                imports.iter().filter(|i| !table.contains_key(*i)).collect();
            if unknown.is_empty() {
                format!("the row of `{m}` is on a circle (or above one): {imports:?}")
            } else {
                format!("the row of `{m}` names modules with no row: {unknown:?}")
            }
        })
        .collect()
}

#[test]
fn the_daemon_keeps_its_floors() {
    let found = violations("daemon/src", &["crate", "super"]);
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

#[test]
fn sandbox_init_keeps_its_floors() {
    // The binary names the library half as `sandbox_init::protocol`.
    let found = violations("sandbox-init/src", &["crate", "super", "sandbox_init"]);
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

#[test]
fn a_grouped_or_nested_path_names_each_module() {
    assert_eq!(heads("{a, b::{c, d}, e as f}"), ["a", "b", "e"]);
    assert_eq!(heads("names::USER"), ["names"]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path();
    std::fs::create_dir_all(src.join("api")).expect("mkdir");
    let file = src.join("api/chat.rs");
    std::fs::write(
        &file,
        "use super::{error::ApiError, AppState};\nuse crate::{names::USER, sandbox::{Sandbox}};\n\
         // crate::store in a comment\nfn f() { crate::runner::of(); }\n#[cfg(test)]\nuse crate::docker;\n",
    )
    .expect("write");
    let found = imports(src, &file, &["crate", "super"]);
    let want: BTreeSet<String> = ["names", "runner", "sandbox"].map(String::from).into();
    assert_eq!(found, want);
}

#[test]
fn rows_that_close_a_circle_are_named() {
    let row = |imports: &[&str]| imports.iter().map(|s| s.to_string()).collect();
    let table: Floors = [
        ("leaf".to_owned(), row(&[])),
        ("a".to_owned(), row(&["b", "leaf"])),
        ("b".to_owned(), row(&["a"])),
        ("c".to_owned(), row(&["ghost"])),
    ]
    .into();
    let found = circles(&table);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found
        .iter()
        .any(|f| f.contains("`c` names modules with no row")));
}
