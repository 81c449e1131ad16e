//! TypeScript/JavaScript agents, written the way `@21st-sdk/agent` documents them:
//! `agents/<slug>.ts` or `agents/<slug>/index.ts` (also `.js`, `.mjs`) with
//! `export default agent({...})`.
//!
//! The user's code never runs on the host. A loader container from the default image
//! (no network, the project read-only) bundles every agent file with esbuild (Node 22,
//! ESM; `@21st-sdk/agent` is provided by the runtime, everything else is resolved from
//! the project's `node_modules`, found by walking up from the agents directory), imports
//! each bundle and describes it: its `agent()` fields, its tools (with the JSON Schema of
//! their zod input) and which hooks it has. The loader's output is hostile input: it is
//! read from files with a size bound, without following links, and validated like a
//! JSON definition. A file that does not build or export an agent is a [`LoadProblem`]
//! with its path and the error; the others load.
//!
//! Bundles are kept by content hash under `<state>/agent-code/bundles/`; a turn copies
//! the bundle and the runtime into the sandbox (see [`super::turn`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use super::loader::{project_root, LoaderSettings, MAX_BUNDLE, RUNTIME_JS};
use super::loader::{read_bounded, run_loader, Built};
use super::{check_slug, AgentDef, LoadProblem};
use crate::docker::Engine;

/// File extensions of agent files.
const EXTENSIONS: [&str; 3] = ["ts", "mjs", "js"];
/// The most tools of one agent.
const MAX_TOOLS: usize = 128;
/// Hooks of `agent({...})`.
pub const HOOKS: [&str; 6] = [
    "onStart",
    "onToolCall",
    "onToolResult",
    "onStepFinish",
    "onFinish",
    "onError",
];

/// What a code agent adds to its definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCode {
    /// The agent file it came from.
    pub path: String,
    /// The sha256 of its bundle (the bundle's name in the bundles directory).
    pub bundle: String,
    /// Its tools.
    pub tools: Vec<ToolInfo>,
    /// The hooks it defines.
    pub hooks: Vec<String>,
}

/// One tool of a code agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    /// Its key in `tools`.
    pub name: String,
    /// The name Claude Code offers it under: `mcp__agent__<name>`.
    pub model_name: String,
    /// Its description.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: Value,
}

/// The MCP server name the tools of an agent are served under.
pub const TOOLS_SERVER: &str = "agent";

/// The agent files of `dir`: `(slug, path)`, sorted. Two files for one slug are a problem.
pub fn entries(dir: &Path) -> (Vec<(String, PathBuf)>, Vec<LoadProblem>) {
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || name == "node_modules" || name.ends_with(".d.ts") {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            for ext in EXTENSIONS {
                let index = path.join(format!("index.{ext}"));
                if index.is_file() {
                    found.entry(name.to_owned()).or_default().push(index);
                }
            }
        } else if let Some((stem, ext)) = name.rsplit_once('.') {
            if EXTENSIONS.contains(&ext) {
                found.entry(stem.to_owned()).or_default().push(path.clone());
            }
        }
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (slug, mut paths) in found {
        paths.sort();
        if let Err(message) = check_slug(&slug) {
            problems.extend(paths.into_iter().map(|path| LoadProblem {
                path,
                message: message.clone(),
            }));
        } else if paths.len() > 1 {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            problems.push(LoadProblem {
                path: paths[0].clone(),
                message: format!("agent {slug:?} is defined twice: {}", names.join(", ")),
            });
        } else {
            out.push((slug, paths.remove(0)));
        }
    }
    (out, problems)
}

/// Where bundles are kept.
pub fn bundles_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("agent-code").join("bundles")
}

/// Where agents deployed through the API as source are kept: `<slug>.<ext>`.
pub fn deployed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("agent-code").join("deployed")
}

/// The largest agent source deployed through the API.
pub const MAX_SOURCE: usize = 4 << 20;

/// What one load gives.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Agents of the agents directory.
    pub files: BTreeMap<String, AgentDef>,
    /// Agents deployed through the API as source.
    pub deployed: BTreeMap<String, AgentDef>,
    /// Files that did not load.
    pub problems: Vec<LoadProblem>,
}

/// Loads every agent file of `dir` and every agent deployed as source, in one loader
/// container.
pub async fn load(engine: &Engine, settings: &LoaderSettings, dir: &Path) -> Loaded {
    let (mut entries, mut problems) = entries(dir);
    let deployed_dir = deployed_dir(&settings.state_dir);
    let (deployed, deployed_problems) = self::entries(&deployed_dir);
    problems.extend(deployed_problems);
    let files = entries.len();
    entries.extend(deployed);
    let mut loaded = Loaded::default();
    if entries.is_empty() {
        loaded.problems = problems;
        return loaded;
    }
    let started = std::time::Instant::now();
    let built = build(engine, settings, dir, &deployed_dir, &entries).await;
    for (index, ((slug, path), result)) in entries.into_iter().zip(built).enumerate() {
        match result {
            Ok(def) if index < files => {
                loaded.files.insert(slug, def);
            }
            Ok(def) => {
                loaded.deployed.insert(slug, def);
            }
            Err(message) => problems.push(LoadProblem { path, message }),
        }
    }
    tracing::info!(
        files,
        deployed = loaded.deployed.len(),
        loaded = loaded.files.len(),
        ms = started.elapsed().as_millis() as u64,
        "agent files loaded"
    );
    loaded.problems = problems;
    loaded
}

/// Builds an agent's source deployed through the API, like a file of the agents
/// directory `dir` (its project's `node_modules` resolve its imports) and in a loader
/// container; keeps the source for later loads and returns the definition, or why it
/// did not build.
pub async fn deploy(
    engine: &Engine,
    settings: &LoaderSettings,
    dir: &Path,
    slug: &str,
    source: &str,
    ext: &str,
) -> Result<AgentDef, String> {
    check_slug(slug)?;
    if !EXTENSIONS.contains(&ext) {
        return Err(format!("{ext:?} is not an agent file type (ts, mjs or js)"));
    }
    if source.len() > MAX_SOURCE {
        return Err(format!(
            "the source is larger than {} MiB",
            MAX_SOURCE >> 20
        ));
    }
    let staging = settings
        .state_dir
        .join("agent-code")
        .join(crate::names::new_id("deploy-"));
    let file = staging.join(format!("{slug}.{ext}"));
    let result = async {
        std::fs::create_dir_all(&staging)
            .and_then(|()| std::fs::write(&file, source))
            .map_err(|e| format!("staging the source: {e}"))?;
        let entry = vec![(slug.to_owned(), file.clone())];
        let mut def = build(engine, settings, dir, &staging, &entry)
            .await
            .pop()
            .unwrap_or_else(|| Err("the loader said nothing about the source".into()))?;
        let kept = deployed_dir(&settings.state_dir);
        std::fs::create_dir_all(&kept).map_err(|e| format!("keeping the source: {e}"))?;
        for other in EXTENSIONS {
            let _ = std::fs::remove_file(kept.join(format!("{slug}.{other}")));
        }
        let target = kept.join(format!("{slug}.{ext}"));
        std::fs::rename(&file, &target).map_err(|e| format!("keeping the source: {e}"))?;
        if let Some(code) = &mut def.code {
            code.path = target.display().to_string();
        }
        Ok(def)
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Bundles, evaluates and describes `entries` (files of the project of `dir`, or of
/// `extra`, mounted apart) in one loader container: one result per entry.
async fn build(
    engine: &Engine,
    settings: &LoaderSettings,
    dir: &Path,
    extra: &Path,
    entries: &[(String, PathBuf)],
) -> Vec<Result<AgentDef, String>> {
    let work = settings
        .state_dir
        .join("agent-code")
        .join(crate::names::new_id("load-"));
    let built = match run_loader(engine, settings, dir, extra, entries, &work).await {
        Ok(built) => built,
        Err(message) => {
            let _ = std::fs::remove_dir_all(&work);
            return entries.iter().map(|_| Err(message.clone())).collect();
        }
    };
    let out = entries
        .iter()
        .enumerate()
        .map(|(index, (_, path))| {
            built
                .get(index)
                .ok_or_else(|| "the loader said nothing about this file".to_owned())
                .and_then(|b| accept(b, &work.join(format!("{index}.mjs")), path, settings))
        })
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    out
}

/// Turns one reported file into a validated definition and keeps its bundle.
fn accept(
    built: &Built,
    bundle: &Path,
    path: &Path,
    settings: &LoaderSettings,
) -> Result<AgentDef, String> {
    if !built.ok {
        let error = built.error.as_deref().unwrap_or("unknown error");
        return Err(error.chars().take(4000).collect());
    }
    let mut definition = built.definition.clone().unwrap_or(Value::Null);
    let object = definition
        .as_object_mut()
        .ok_or("the agent has no definition")?;
    if let Some(servers) = object.remove("mcpServers") {
        object.insert("mcpServers".into(), mcp_servers(&servers)?);
    }
    let mut def: AgentDef = serde_json::from_value(definition).map_err(|e| e.to_string())?;
    def.validate()?;
    if built.tools.len() > MAX_TOOLS {
        return Err(format!("more than {MAX_TOOLS} tools"));
    }
    let mut tools = Vec::new();
    for tool in &built.tools {
        check_tool_name(&tool.name)?;
        if tools.iter().any(|t: &ToolInfo| t.name == tool.name) {
            return Err(format!("tool {:?} is defined twice", tool.name));
        }
        if !tool.input_schema.is_object() {
            return Err(format!(
                "tool {:?}: its input schema is not an object",
                tool.name
            ));
        }
        tools.push(ToolInfo {
            model_name: format!("mcp__{TOOLS_SERVER}__{}", tool.name),
            name: tool.name.clone(),
            description: tool.description.chars().take(10_000).collect(),
            input_schema: tool.input_schema.clone(),
        });
    }
    let hooks = HOOKS
        .iter()
        .filter(|h| built.hooks.iter().any(|b| b == *h))
        .map(|h| h.to_string())
        .collect();
    let bytes = read_bounded(bundle, MAX_BUNDLE).map_err(|e| format!("its bundle: {e}"))?;
    let hash = hex(&Sha256::digest(&bytes));
    let dir = bundles_dir(&settings.state_dir);
    let target = dir.join(format!("{hash}.mjs"));
    if !target.is_file() {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&target, &bytes))
            .map_err(|e| format!("keeping its bundle: {e}"))?;
    }
    def.code = Some(AgentCode {
        path: path.display().to_string(),
        bundle: hash,
        tools,
        hooks,
    });
    Ok(def)
}

/// `mcpServers: [{name, url}]` as Claude Code's `mcpServers` object of remote servers.
pub fn mcp_servers(value: &Value) -> Result<Value, String> {
    let Some(list) = value.as_array() else {
        return Ok(value.clone()); // Already Claude Code's object form.
    };
    let mut map = serde_json::Map::new();
    for server in list {
        let name = server["name"].as_str().unwrap_or_default();
        let url = server["url"].as_str().unwrap_or_default();
        if name.is_empty()
            || name == TOOLS_SERVER
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "mcpServers: {name:?} is not a usable server name (letters, digits, '-', '_'; \
                 not {TOOLS_SERVER:?})"
            ));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("mcpServers: {name}: {url:?} is not an http(s) URL"));
        }
        map.insert(
            name.to_owned(),
            serde_json::json!({ "type": "http", "url": url }),
        );
    }
    Ok(Value::Object(map))
}

fn check_tool_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tool {name:?}: a tool name is 1-50 letters, digits, '_' or '-'"
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_files_are_found_by_slug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("one.ts"), "").expect("write");
        std::fs::write(root.join("types.d.ts"), "").expect("write");
        std::fs::create_dir_all(root.join("two")).expect("mkdir");
        std::fs::write(root.join("two/index.mjs"), "").expect("write");
        std::fs::write(root.join("twice.ts"), "").expect("write");
        std::fs::write(root.join("twice.js"), "").expect("write");
        std::fs::create_dir_all(root.join("node_modules/x")).expect("mkdir");
        let (found, problems) = entries(root);
        let slugs: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(slugs, ["one", "two"]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("twice"), "{:?}", problems);
        assert_eq!(project_root(&root.join("two")), root);
    }

    #[test]
    fn mcp_servers_become_remote_servers() {
        let servers = serde_json::json!([{ "name": "docs", "url": "https://mcp.example.com/mcp" }]);
        assert_eq!(
            mcp_servers(&servers).expect("valid")["docs"],
            serde_json::json!({ "type": "http", "url": "https://mcp.example.com/mcp" })
        );
        assert!(
            mcp_servers(&serde_json::json!([{ "name": "agent", "url": "https://x" }])).is_err()
        );
        assert!(mcp_servers(&serde_json::json!([{ "name": "x", "url": "file:///etc" }])).is_err());
        assert!(check_tool_name("save_note").is_ok());
        assert!(check_tool_name("a b").is_err());
    }
}
