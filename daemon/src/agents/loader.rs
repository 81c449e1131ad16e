//! The agent loader container: runs the runtime's `build` over agent files, with what
//! it may write bounded, and reads back what it reports (hostile input: bounded, never
//! through a link).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::docker::{ContainerSpec, Engine, Limits};

/// The runtime: the loader in a loader container, the tools' MCP server and the hook
/// runner in a sandbox.
pub const RUNTIME_JS: &str = include_str!("runtime.mjs");
/// The largest bundle accepted.
pub const MAX_BUNDLE: u64 = 32 << 20;
/// The project an agents directory belongs to: its nearest ancestor (itself included)
/// with a `node_modules` directory, else the directory itself.
pub fn project_root(agents_dir: &Path) -> PathBuf {
    agents_dir
        .ancestors()
        .find(|d| d.join("node_modules").is_dir())
        .unwrap_or(agents_dir)
        .to_owned()
}
/// What loading needs of the daemon.
#[derive(Debug, Clone)]
pub struct LoaderSettings {
    /// The image with Node.js and esbuild (the default image).
    pub image: String,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Labels of the loader container (so leaks are found like sandboxes').
    pub labels: Vec<(String, String)>,
}

/// How long one load (all files) may take.
const LOAD_DEADLINE: Duration = Duration::from_secs(180);
/// The loader's `/tmp` (its `HOME`), in memory under its memory limit, in MiB.
const SCRATCH_MB: u64 = 256;
/// The largest description the loader may write.
const MAX_RESULT: u64 = 8 << 20;

/// One file as the loader reported it.
#[derive(Debug, Deserialize)]
pub(super) struct Built {
    pub(super) ok: bool,
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) definition: Option<Value>,
    #[serde(default)]
    pub(super) tools: Vec<BuiltTool>,
    #[serde(default)]
    pub(super) hooks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BuiltTool {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) input_schema: Value,
}

pub(super) async fn run_loader(
    engine: &Engine,
    settings: &LoaderSettings,
    dir: &Path,
    extra: &Path,
    entries: &[(String, PathBuf)],
    work: &Path,
) -> Result<Vec<Built>, String> {
    // Without an agents directory, deployed sources still load (with no project).
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|_| work.join("no-project"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let project = project_root(&dir);
    let extra = extra.canonicalize().unwrap_or_else(|_| extra.to_owned());
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let runtime = work.join("runtime.mjs");
    std::fs::write(&runtime, RUNTIME_JS).map_err(|e| format!("writing the runtime: {e}"))?;
    let mut argv = vec![
        "node".to_owned(),
        "/opt/sandboxd/runtime.mjs".to_owned(),
        "build".to_owned(),
        "/out".to_owned(),
    ];
    for (_, path) in entries {
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        let (mount, rel) = match path.strip_prefix(&extra) {
            Ok(rel) => ("/deployed", rel),
            Err(_) => (
                "/project",
                path.strip_prefix(&project)
                    .map_err(|_| format!("{} is outside the project", path.display()))?,
            ),
        };
        let rel = rel
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", path.display()))?;
        argv.push(format!("{mount}/{rel}"));
    }
    let spec = ContainerSpec {
        name: format!("sandboxd-agent-loader-{}", crate::names::new_id("")),
        image: settings.image.clone(),
        entrypoint: argv,
        // Sources deployed through the API resolve imports from the project too.
        env: vec![
            "HOME=/tmp".into(),
            "NODE_ENV=production".into(),
            "SANDBOXD_NODE_PATHS=/project/node_modules".into(),
        ],
        labels: settings.labels.iter().cloned().collect(),
        binds: vec![
            format!("{}:/project:ro", project.display()),
            format!("{}:/opt/sandboxd/runtime.mjs:ro", runtime.display()),
            format!("{}:/out", out.display()),
        ]
        .into_iter()
        .chain(
            extra
                .is_dir()
                .then(|| format!("{}:/deployed:ro", extra.display())),
        )
        .collect(),
        hostname: "agent-loader".into(),
        working_dir: "/project".into(),
        limits: Limits {
            memory_bytes: Some(2 << 30),
            cpus: Some(1.0),
            pids: Some(512),
        },
        network: "none".into(),
        // The files' code runs here, as `nobody` (see the runtime's `build`): the
        // root filesystem is read-only, scratch is in memory, and no file written
        // (a bundle, by esbuild as root) may pass a bundle's size.
        confined: Some(crate::docker::Confined {
            scratch: vec![("/tmp".into(), SCRATCH_MB)],
            max_file_bytes: (MAX_BUNDLE + (1 << 20)) as i64,
        }),
        ..Default::default()
    };
    let id = engine
        .run(spec)
        .await
        .map_err(|e| format!("could not start the agent loader container: {e}"))?;
    let exit = wait_loader(engine, &id).await;
    let _ = engine.remove(&id).await;
    exit?;
    let text = read_bounded(&out.join("result.json"), MAX_RESULT)
        .map_err(|e| format!("the loader gave no result ({e})"))?;
    // Bundles move next to the result for `accept`.
    for index in 0..entries.len() {
        let from = out.join(format!("{index}.mjs"));
        let _ = std::fs::rename(&from, work.join(format!("{index}.mjs")));
    }
    serde_json::from_slice::<Vec<Built>>(&text)
        .map_err(|e| format!("the loader's result is not valid: {e}"))
}

/// Waits for the loader to exit, at most [`LOAD_DEADLINE`].
async fn wait_loader(engine: &Engine, id: &str) -> Result<(), String> {
    match engine.wait_exit(id, LOAD_DEADLINE).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "loading took longer than {} s and was stopped",
            LOAD_DEADLINE.as_secs()
        )),
        Err(e) => Err(format!("the agent loader container: {e}")),
    }
}

/// Reads a regular file the loader wrote, refusing links and anything over `max`.
pub(super) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {} MiB", max >> 20));
    }
    Ok(bytes)
}
