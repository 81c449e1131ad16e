//! Agent definitions: one JSON file per agent in the agents directory, named
//! `<slug>.json`, with the fields of `agent({...})` from `@21st-sdk/agent`, or a
//! TypeScript/JavaScript file calling `agent({...})` itself (see [`code`]).

pub mod code;
mod dir;
mod env;
mod loader;
pub mod turn;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use dir::{load_dir, Loaded};

use crate::store::{Store, StoreError};

/// One agent, as deployed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentDef {
    /// Display name (defaults to the slug).
    #[serde(default)]
    pub name: Option<String>,
    /// The agent runtime: `claude-code` (the default) or `codex`.
    #[serde(default)]
    pub runtime: Option<String>,
    /// Model id passed to the CLI.
    #[serde(default)]
    pub model: Option<String>,
    /// A system prompt, or the Claude Code preset with an appendix.
    #[serde(default)]
    pub system_prompt: Option<SystemPrompt>,
    /// Claude Code permission mode.
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Turn limit of one run.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Cost limit of one run, in USD.
    #[serde(default)]
    pub max_budget_usd: Option<f64>,
    /// Cost limit of all model calls of one sandbox, in USD.
    #[serde(default)]
    pub max_sandbox_budget_usd: Option<f64>,
    /// Tools the agent may not use.
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
    /// MCP servers, as Claude Code's `mcpServers` object.
    #[serde(default)]
    pub mcp_servers: Option<serde_json::Map<String, serde_json::Value>>,
    /// The environment of its sandboxes.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Tools and hooks, for an agent defined in code (set by the loader only).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub code: Option<code::AgentCode>,
}

/// A system prompt: a plain string or `{type: "preset", preset: "claude_code", append?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Replaces the default prompt.
    Text(String),
    /// The Claude Code prompt, optionally with text appended.
    Preset {
        /// Always `"preset"`.
        #[serde(rename = "type")]
        kind: PresetTag,
        /// Always `"claude_code"`.
        preset: PresetName,
        /// Text appended to the preset.
        #[serde(default)]
        append: Option<String>,
    },
}

/// The literal `"preset"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetTag {
    /// `"preset"`
    Preset,
}

/// The literal `"claude_code"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetName {
    /// `"claude_code"`
    ClaudeCode,
}

/// `Sandbox({...})`: how every sandbox of the agent is prepared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfig {
    /// Image to start from (default: the daemon's `--image`).
    #[serde(default)]
    pub image: Option<String>,
    /// Debian packages baked into the agent's template image.
    #[serde(default)]
    pub apt: Vec<String>,
    /// Commands (as root) baked into the agent's template image.
    #[serde(default)]
    pub build: Vec<String>,
    /// Commands run in every new sandbox, in order, in `cwd`.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Files written into every new sandbox: path (relative to `/home/user`) to content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Environment of everything that runs in the sandbox.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Working directory of setup, exec and the agent (default `/home/user`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// CPU limit.
    #[serde(default)]
    pub cpu_count: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default, rename = "memoryMB")]
    pub memory_mb: Option<u64>,
    /// Idle lifetime in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Egress allow list.
    #[serde(default)]
    pub network_allow_out: Option<Vec<String>>,
    /// Egress deny list.
    #[serde(default)]
    pub network_deny_out: Option<Vec<String>>,
    /// Passwordless `sudo` for `user` (the image has it): the sandbox runs without
    /// no-new-privileges so the setuid `sudo` works. Root inside is still confined by
    /// the container. Off: `sudo` fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sudo: bool,
}

const PERMISSION_MODES: &[&str] = &[
    "default",
    "acceptEdits",
    "plan",
    "bypassPermissions",
    "dontAsk",
    "auto",
];

impl AgentDef {
    /// Parses and validates a definition.
    pub fn parse(json: &str) -> Result<Self, String> {
        let def: AgentDef = serde_json::from_str(json).map_err(|e| e.to_string())?;
        def.validate()?;
        Ok(def)
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(runtime) = &self.runtime {
            if !crate::names::RUNTIMES.contains(&runtime.as_str()) {
                return Err(format!(
                    "runtime {runtime:?} is not supported (one of {})",
                    crate::names::RUNTIMES.join(", ")
                ));
            }
        }
        if let Some(mode) = &self.permission_mode {
            check_permission_mode(mode)?;
        }
        if self.max_budget_usd.is_some_and(|b| b.is_nan() || b <= 0.0) {
            return Err("maxBudgetUsd must be a positive number".into());
        }
        if self
            .max_sandbox_budget_usd
            .is_some_and(|b| b.is_nan() || b <= 0.0)
        {
            return Err("maxSandboxBudgetUsd must be a positive number".into());
        }
        let sb = &self.sandbox;
        if sb.cpu_count.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err("sandbox.cpuCount must be a positive number".into());
        }
        if sb.memory_mb == Some(0) {
            return Err("sandbox.memoryMB must be positive".into());
        }
        for key in sb.envs.keys() {
            check_env_name(key).map_err(|e| format!("sandbox.envs: {e}"))?;
        }
        for package in &sb.apt {
            if package.is_empty()
                || !package
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.:=~_".contains(c))
            {
                return Err(format!("sandbox.apt: {package:?} is not a package name"));
            }
        }
        for (field, list) in [
            ("networkAllowOut", &sb.network_allow_out),
            ("networkDenyOut", &sb.network_deny_out),
        ] {
            for entry in list.iter().flatten() {
                crate::firewall::Target::parse(entry)
                    .map_err(|e| format!("sandbox.{field}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The display name.
    pub fn display_name(&self, slug: &str) -> String {
        self.name.clone().unwrap_or_else(|| slug.to_owned())
    }
}

/// Validates a Claude Code permission mode.
pub fn check_permission_mode(mode: &str) -> Result<(), String> {
    if PERMISSION_MODES.contains(&mode) {
        Ok(())
    } else {
        Err(format!(
            "permissionMode {mode:?} is not one of {}",
            PERMISSION_MODES.join(", ")
        ))
    }
}

/// Validates an environment variable name.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid environment variable name"))
    }
}

/// Validates an agent slug: letters, digits, `-`, `_`, `.`; not starting with `.`.
pub fn check_slug(slug: &str) -> Result<(), String> {
    let valid = !slug.is_empty()
        && slug.len() <= 128
        && !slug.starts_with('.')
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{slug:?} is not a valid agent slug (letters, digits, '-', '_', '.')"
        ))
    }
}

/// A definition file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// Where a definition came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A file in the agents directory.
    File,
    /// Deployed through the API (kept in the state directory).
    Api,
}

#[derive(Debug, Clone)]
struct Entry {
    def: AgentDef,
    source: Source,
    /// The definition of the agents directory's file of the same slug that this
    /// deployment wins over; it is the agent again once the deployment is deleted.
    shadows: Option<AgentDef>,
}

impl Entry {
    fn file(def: AgentDef) -> Self {
        Self {
            def,
            source: Source::File,
            shadows: None,
        }
    }

    fn api(def: AgentDef, shadows: Option<AgentDef>) -> Self {
        Self {
            def,
            source: Source::Api,
            shadows,
        }
    }
}

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No such agent.
    #[error("agent {0:?} does not exist")]
    NotFound(String),
    /// The slug or definition is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The agent comes from the agents directory: it is changed or removed there.
    #[error(
        "agent {0:?} is defined by a file in the agents directory; change or remove that file \
         instead"
    )]
    FromFile(String),
    /// Persisting failed.
    #[error("storing the agent failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The agents the daemon knows: files from the agents directory, and definitions
/// deployed through the API (kept in the store). A file's agent is changed in its file
/// (a `PUT` or `DELETE` of it is refused); a deployment made before a file of its slug
/// appeared wins over it until the deployment is deleted.
#[derive(Debug, Default)]
pub struct Agents {
    by_slug: RwLock<HashMap<String, Entry>>,
    store: Option<Arc<Store>>,
    reloads: Reloads,
}

/// Problems of the last load of the agents directory, and reloads asked for.
#[derive(Debug, Default)]
struct Reloads {
    problems: RwLock<Vec<LoadProblem>>,
    generation: std::sync::atomic::AtomicU64,
    requested: tokio::sync::Notify,
    done: tokio::sync::Notify,
}

impl Agents {
    /// A registry holding `agents` from files (no persistence of deployments).
    pub fn new(agents: BTreeMap<String, AgentDef>) -> Self {
        Self {
            by_slug: RwLock::new(
                agents
                    .into_iter()
                    .map(|(k, def)| (k, Entry::file(def)))
                    .collect(),
            ),
            store: None,
            reloads: Reloads::default(),
        }
    }

    /// Files from `agents`, then what was deployed earlier into `store`. A stored
    /// definition this version cannot read is reported and skipped.
    pub fn with_deployed(
        agents: BTreeMap<String, AgentDef>,
        store: Arc<Store>,
    ) -> Result<(Self, Vec<LoadProblem>), StoreError> {
        let mut registry = Self::new(agents);
        let mut problems = Vec::new();
        let mut deployed = Vec::new();
        for (slug, text) in store.agents()? {
            match AgentDef::parse(&text) {
                Ok(def) => deployed.push((slug, def)),
                Err(message) => problems.push(LoadProblem {
                    path: PathBuf::from(format!("state database: agent {slug}")),
                    message,
                }),
            }
        }
        {
            let map = registry
                .by_slug
                .get_mut()
                .unwrap_or_else(|p| p.into_inner());
            for (slug, def) in deployed {
                let file = map.remove(&slug).map(|e| e.def);
                map.insert(slug, Entry::api(def, file));
            }
        }
        registry.store = Some(store);
        Ok((registry, problems))
    }

    /// The agent named `slug`.
    pub fn get(&self, slug: &str) -> Option<AgentDef> {
        self.read().get(slug).map(|e| e.def.clone())
    }

    /// The agent and where it came from.
    pub fn get_with_source(&self, slug: &str) -> Option<(AgentDef, Source)> {
        self.read()
            .get(slug)
            .map(|e| (e.def.clone(), e.source.clone()))
    }

    /// All agents, sorted by slug.
    pub fn list(&self) -> Vec<(String, AgentDef, Source)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, e)| (k.clone(), e.def.clone(), e.source.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Deploys (creates or replaces) a definition; returns whether it was new.
    pub fn deploy(&self, slug: &str, def: AgentDef) -> Result<bool, AgentError> {
        check_slug(slug).map_err(AgentError::Invalid)?;
        def.validate().map_err(AgentError::Invalid)?;
        // One registry lock around store and map keeps them in the same order.
        let mut map = self.write();
        let shadows = deployable(&map, slug)?;
        if let Some(store) = &self.store {
            let text = serde_json::to_string(&def)
                .map_err(|e| AgentError::Invalid(format!("serializing: {e}")))?;
            store.put_agent(slug, &text)?;
        }
        let previous = map.insert(slug.to_owned(), Entry::api(def, shadows));
        if let Some(previous) = &previous {
            forget_source(previous);
        }
        Ok(previous.is_none())
    }

    /// Deploys (creates or replaces) an agent built from source deployed through the
    /// API (its source is kept by [`code::deploy`]); returns whether it was new.
    pub fn deploy_code(&self, slug: &str, def: AgentDef) -> Result<bool, AgentError> {
        check_slug(slug).map_err(AgentError::Invalid)?;
        let mut map = self.write();
        let shadows = deployable(&map, slug)?;
        if let Some(store) = &self.store {
            // A definition deployed as JSON before gives way.
            store.delete_agent(slug)?;
        }
        let previous = map.insert(slug.to_owned(), Entry::api(def, shadows));
        Ok(previous.is_none())
    }

    /// Replaces the definitions that came from the agents directory and those deployed
    /// as source (a reload); deployed ones keep winning.
    pub fn replace_files(
        &self,
        files: BTreeMap<String, AgentDef>,
        deployed: BTreeMap<String, AgentDef>,
        problems: Vec<LoadProblem>,
    ) {
        {
            let mut map = self.write();
            map.retain(|_, e| e.source == Source::Api && e.def.code.is_none());
            // What each deployment wins over is this load's files alone.
            for entry in map.values_mut() {
                entry.shadows = None;
            }
            for (slug, def) in deployed {
                map.entry(slug).or_insert(Entry::api(def, None));
            }
            for (slug, def) in files {
                match map.get_mut(&slug) {
                    Some(deployment) => deployment.shadows = Some(def),
                    None => {
                        map.insert(slug, Entry::file(def));
                    }
                }
            }
        }
        *self
            .reloads
            .problems
            .write()
            .unwrap_or_else(|p| p.into_inner()) = problems;
        self.reloads
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.reloads.done.notify_waiters();
    }

    /// How many times the agents directory was loaded since start-up.
    pub fn loads(&self) -> u64 {
        self.reloads
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Files of the agents directory that did not load, as of the last load.
    pub fn problems(&self) -> Vec<LoadProblem> {
        self.reloads
            .problems
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks for the agents directory to be loaded again and waits (at most `limit`)
    /// until it was; returns whether it was.
    pub async fn reload(&self, limit: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let before = self.reloads.generation.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        self.reloads.requested.notify_one();
        loop {
            let done = self.reloads.done.notified();
            if self.reloads.generation.load(Ordering::SeqCst) > before {
                return true;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return false;
            }
        }
    }

    /// Resolves when a reload is asked for.
    pub async fn reload_requested(&self) {
        self.reloads.requested.notified().await;
    }

    /// Removes a deployed definition.
    pub fn remove(&self, slug: &str) -> Result<(), AgentError> {
        let mut map = self.write();
        match map.get(slug).map(|e| e.source.clone()) {
            None => return Err(AgentError::NotFound(slug.to_owned())),
            Some(Source::File) => return Err(AgentError::FromFile(slug.to_owned())),
            Some(Source::Api) => {}
        }
        let file = map.get(slug).and_then(|e| e.shadows.clone());
        if let Some(store) = &self.store {
            store.delete_agent(slug)?;
            if file.is_none() {
                // Its secrets go with it: a later agent of the slug starts without them.
                store.forget_agent_env(slug)?;
            }
        }
        if let Some(entry) = map.remove(slug) {
            forget_source(&entry);
        }
        if let Some(def) = file {
            map.insert(slug.to_owned(), Entry::file(def));
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated (inserts
        // are single calls), so a poisoned lock is still consistent.
        self.by_slug.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.by_slug.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether agent `slug` may be deployed through the API: not over a file's agent (it is
/// changed in its file). Returns the file's definition a deployment already wins over.
fn deployable(map: &HashMap<String, Entry>, slug: &str) -> Result<Option<AgentDef>, AgentError> {
    match map.get(slug) {
        Some(e) if e.source == Source::File => Err(AgentError::FromFile(slug.to_owned())),
        Some(e) => Ok(e.shadows.clone()),
        None => Ok(None),
    }
}

/// Removes the kept source of an agent deployed as source, so later loads do not bring
/// it back. (The source of a file agent is the user's own and stays.)
fn forget_source(entry: &Entry) {
    if let (Source::Api, Some(code)) = (&entry.source, &entry.def.code) {
        if let Err(e) = std::fs::remove_file(&code.path) {
            tracing::warn!(path = %code.path, "could not remove a deployed agent's source: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_definition() {
        let def = AgentDef::parse(
            r#"{
              "name": "Demo", "runtime": "claude-code", "model": "claude-sonnet-4-6",
              "systemPrompt": {"type": "preset", "preset": "claude_code", "append": "Be brief."},
              "permissionMode": "bypassPermissions", "maxTurns": 5, "maxBudgetUsd": 1.5,
              "disallowedTools": ["WebFetch"], "mcpServers": {},
              "sandbox": {"apt": ["jq"], "setup": ["true"], "files": {"a.txt": "x"},
                          "envs": {"A_B": "1"}, "cwd": "/home/user/app", "cpuCount": 2,
                          "memoryMB": 1024, "timeoutMs": 60000,
                          "networkAllowOut": ["10.0.0.0/8"], "networkDenyOut": []}
            }"#,
        )
        .expect("valid");
        assert_eq!(def.sandbox.memory_mb, Some(1024));
        assert!(matches!(
            def.system_prompt,
            Some(SystemPrompt::Preset { .. })
        ));
        let plain = AgentDef::parse(r#"{"systemPrompt": "hi"}"#).expect("valid");
        assert_eq!(plain.system_prompt, Some(SystemPrompt::Text("hi".into())));
    }

    #[test]
    fn rejects_bad_definitions_with_reasons() {
        let unknown = AgentDef::parse(r#"{"sandbox": {"aptt": []}}"#).unwrap_err();
        assert!(unknown.contains("aptt"), "{unknown}");
        let net =
            AgentDef::parse(r#"{"sandbox": {"networkDenyOut": ["*.evil.com"]}}"#).unwrap_err();
        assert!(
            net.contains("networkDenyOut") && net.contains("wildcard"),
            "{net}"
        );
        let mode = AgentDef::parse(r#"{"permissionMode": "yolo"}"#).unwrap_err();
        assert!(mode.contains("yolo"), "{mode}");
        let env = AgentDef::parse(r#"{"sandbox": {"envs": {"1X": "a"}}}"#).unwrap_err();
        assert!(env.contains("1X"), "{env}");
        AgentDef::parse(r#"{"runtime": "codex"}"#).expect("codex is a runtime");
        let runtime = AgentDef::parse(r#"{"runtime": "gemini"}"#).unwrap_err();
        assert!(
            runtime.contains("gemini") && runtime.contains("codex"),
            "{runtime}"
        );
        let apt = AgentDef::parse(r#"{"sandbox": {"apt": ["jq; rm -rf /"]}}"#).unwrap_err();
        assert!(apt.contains("package"), "{apt}");
    }

    #[test]
    fn deployments_persist_and_file_agents_are_protected() {
        let store = Arc::new(Store::in_memory().expect("store"));
        let files = BTreeMap::from([("from-file".to_owned(), AgentDef::default())]);
        let (agents, _) = Agents::with_deployed(files.clone(), store.clone()).expect("load");
        let def = AgentDef::parse(r#"{"name": "API agent"}"#).expect("valid");
        assert!(agents.deploy("api", def.clone()).expect("deploy"));
        assert!(!agents.deploy("api", def).expect("redeploy"));
        assert!(matches!(
            agents.remove("from-file"),
            Err(AgentError::FromFile(_))
        ));
        assert!(matches!(
            agents.remove("nope"),
            Err(AgentError::NotFound(_))
        ));
        assert!(matches!(
            agents.deploy("../x", AgentDef::default()),
            Err(AgentError::Invalid(_))
        ));
        // A new registry on the same store sees the deployment.
        let (again, problems) = Agents::with_deployed(files, store).expect("load");
        assert!(problems.is_empty());
        assert_eq!(
            again.get_with_source("api").map(|(d, s)| (d.name, s)),
            Some((Some("API agent".into()), Source::Api))
        );
        again.remove("api").expect("remove");
        assert!(again.get("api").is_none());
    }

    #[test]
    fn a_source_deployed_agent_loses_its_kept_source_when_replaced_or_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coded = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "export default 1").expect("write");
            let def = AgentDef {
                code: Some(code::AgentCode {
                    path: path.display().to_string(),
                    bundle: "abc".into(),
                    tools: Vec::new(),
                    hooks: Vec::new(),
                }),
                ..Default::default()
            };
            (path, def)
        };
        let agents = Agents::new(BTreeMap::new());
        let (first, def) = coded("one.ts");
        assert!(agents.deploy_code("one", def).expect("deploy"));
        // A reload keeps JSON deployments, brings source ones back from the load.
        agents.replace_files(BTreeMap::new(), BTreeMap::new(), Vec::new());
        assert!(agents.get("one").is_none());
        let (_, def) = coded("one.ts");
        agents.replace_files(
            BTreeMap::new(),
            BTreeMap::from([("one".to_owned(), def)]),
            Vec::new(),
        );
        assert_eq!(agents.get_with_source("one").expect("one").1, Source::Api);
        // Replaced by JSON: the source goes, so a reload does not bring it back.
        agents.deploy("one", AgentDef::default()).expect("json");
        assert!(!first.exists());
        let (second, def) = coded("two.ts");
        agents.deploy_code("two", def).expect("deploy");
        agents.remove("two").expect("remove");
        assert!(!second.exists());
        assert!(agents.get("two").is_none());
    }

    #[test]
    fn slugs_are_checked() {
        assert!(check_slug("demo-agent_1.v2").is_ok());
        assert!(check_slug(".hidden").is_err());
        assert!(check_slug("a/b").is_err());
        assert!(check_slug("").is_err());
    }
}
