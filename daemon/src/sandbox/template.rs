//! Templates: an agent's `sandbox.apt` packages and `sandbox.build` commands baked into
//! a derived image, built once per (base image id, apt list, build commands) and cached
//! by that hash. The engine keeps the images, so the cache survives daemon restarts;
//! a per-hash lock makes concurrent creates of one agent build it once.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Sandboxes;
use crate::docker::Engine;

/// The label carrying a template's hash.
const TEMPLATE_LABEL: &str = "sandboxd.template";

/// A template to build: its tag and Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// `sandboxd/template:<hash>`.
    pub tag: String,
    /// The hash of its inputs.
    pub hash: String,
    /// The Dockerfile.
    pub dockerfile: String,
}

/// The recipe for `apt` and `build` on top of the image `base` whose id is `base_id`.
pub fn recipe(base: &str, base_id: &str, apt: &[String], build: &[String]) -> Recipe {
    let mut hasher = Sha256::new();
    for part in [base_id]
        .into_iter()
        .chain(apt.iter().map(String::as_str))
        .chain(["\0build"])
        .chain(build.iter().map(String::as_str))
    {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut dockerfile = format!("FROM {base}\nUSER root\nENV DEBIAN_FRONTEND=noninteractive\n");
    if !apt.is_empty() {
        // Package names are validated (no spaces or shell syntax) when the agent loads.
        dockerfile.push_str(&format!(
            "RUN apt-get update && apt-get install -y --no-install-recommends {} \
             && apt-get clean && rm -rf /var/lib/apt/lists/*\n",
            apt.join(" ")
        ));
    }
    for command in build {
        // JSON exec form: any command text is safe in it.
        let argv = serde_json::json!(["bash", "-lc", command]);
        dockerfile.push_str(&format!("RUN {argv}\n"));
    }
    Recipe {
        tag: format!("sandboxd/template:{hash}"),
        hash,
        dockerfile,
    }
}

impl Sandboxes {
    /// The template image for `apt`/`build` on `base` when it is built already.
    pub(super) async fn built_template(
        &self,
        engine: &Engine,
        base: &str,
        apt: &[String],
        build: &[String],
    ) -> Option<String> {
        let base_id = engine.image_info(base).await.ok()??.id;
        let recipe = recipe(base, &base_id, apt, build);
        engine
            .image_labels(&recipe.tag)
            .await
            .ok()?
            .map(|_| recipe.tag)
    }

    /// The template image for `apt`/`build` on `base`, built if missing.
    pub(super) async fn template_image(
        &self,
        engine: &Engine,
        base: &str,
        apt: &[String],
        build: &[String],
    ) -> Result<String, String> {
        let base_id = engine
            .image_info(base)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the base image {base} is missing"))?
            .id;
        let recipe = recipe(base, &base_id, apt, build);
        let lock = {
            let mut locks = self.template_locks.lock().await;
            locks
                .entry(recipe.hash.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let _building = lock.lock().await;
        if engine
            .image_labels(&recipe.tag)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            tracing::debug!(template = %recipe.tag, "template cached");
            return Ok(recipe.tag);
        }
        tracing::info!(
            template = %recipe.tag,
            "building template: apt {apt:?}, build {build:?}"
        );
        let started = std::time::Instant::now();
        engine
            .build(
                &recipe.tag,
                crate::image::dockerfile_context(&recipe.dockerfile),
                HashMap::new(),
                HashMap::from([(TEMPLATE_LABEL.to_owned(), recipe.hash.clone())]),
                |line| tracing::info!(template = %recipe.tag, "{line}"),
            )
            .await
            .map_err(|e| {
                format!("building the template image (apt {apt:?}, build {build:?}) failed: {e}")
            })?;
        tracing::info!(
            template = %recipe.tag,
            secs = started.elapsed().as_secs_f64(),
            "template built"
        );
        Ok(recipe.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_every_input() {
        let apt = vec!["jq".to_owned()];
        let build = vec!["echo hi".to_owned()];
        let a = recipe("img", "sha256:1", &apt, &build);
        assert_eq!(a, recipe("img", "sha256:1", &apt, &build));
        assert_ne!(a.hash, recipe("img", "sha256:2", &apt, &build).hash);
        assert_ne!(a.hash, recipe("img", "sha256:1", &[], &build).hash);
        assert_ne!(a.hash, recipe("img", "sha256:1", &apt, &[]).hash);
        // Moving a word between the lists changes the hash too.
        assert_ne!(
            recipe("i", "x", &["a".into()], &[]).hash,
            recipe("i", "x", &[], &["a".into()]).hash
        );
        assert!(a.tag.starts_with("sandboxd/template:"));
    }

    #[test]
    fn build_commands_are_quoted_safely() {
        let r = recipe(
            "img",
            "id",
            &[],
            &["echo \"a\" && echo 'b'\nexit 0".to_owned()],
        );
        assert!(
            r.dockerfile
                .contains(r#"RUN ["bash","-lc","echo \"a\" && echo 'b'\nexit 0"]"#),
            "{}",
            r.dockerfile
        );
    }
}
