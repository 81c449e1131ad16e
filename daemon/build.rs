//! Embeds the web console's bundle (`console/dist`, built by `scripts/lib.sh`'s
//! `build_console` from the sources in `console/`) into the binary. When it has not
//! been built, a page saying how to build it is embedded instead, so a bare
//! `cargo build` still works.

use std::path::{Path, PathBuf};

/// The files of the bundle, in the order `console_assets.rs` names them.
const FILES: [&str; 3] = ["index.html", "app.js", "app.css"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = manifest.join("../console/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    for file in FILES {
        println!("cargo:rerun-if-changed={}", dist.join(file).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let built = FILES.iter().all(|f| dist.join(f).is_file());
    let item = |name: &str, file: &str| -> String {
        if built {
            let path = dist.join(file).canonicalize().expect("the file exists");
            format!("pub const {name}: &[u8] = include_bytes!({:?});\n", path)
        } else {
            format!("pub const {name}: &[u8] = b\"\";\n")
        }
    };
    let code = format!(
        "/// Whether the bundle was built (else `INDEX_HTML` is empty).\n\
         pub const BUILT: bool = {built};\n{}{}{}",
        item("INDEX_HTML", "index.html"),
        item("APP_JS", "app.js"),
        item("APP_CSS", "app.css"),
    );
    write(&out.join("console_assets.rs"), &code);
}

fn write(path: &Path, code: &str) {
    // Unchanged output keeps the crate from recompiling for nothing.
    if std::fs::read_to_string(path).ok().as_deref() != Some(code) {
        std::fs::write(path, code).expect("OUT_DIR is writable");
    }
}
