//! Environment variables of an agent (the platform's `21st env set/list/remove`): kept
//! in the state database, given to its tools and hooks at each turn. Values are
//! secrets: only names are ever listed.

use super::{check_env_name, AgentError, Agents};

/// The longest value accepted.
const MAX_VALUE: usize = 64 * 1024;
/// The most variables of one agent.
const MAX_VARS: usize = 256;

impl Agents {
    /// Sets variables of agent `slug`; returns the names it has now.
    pub fn set_env(
        &self,
        slug: &str,
        vars: &[(String, String)],
    ) -> Result<Vec<String>, AgentError> {
        self.get(slug)
            .ok_or_else(|| AgentError::NotFound(slug.to_owned()))?;
        for (name, value) in vars {
            check_env_name(name).map_err(AgentError::Invalid)?;
            if name.starts_with("SANDBOXD_") || name.starts_with("ANTHROPIC_") {
                return Err(AgentError::Invalid(format!(
                    "{name} is reserved (SANDBOXD_ and ANTHROPIC_ variables are the daemon's)"
                )));
            }
            if value.len() > MAX_VALUE || value.contains('\0') {
                return Err(AgentError::Invalid(format!(
                    "the value of {name} is over {} KiB or holds a NUL byte",
                    MAX_VALUE / 1024
                )));
            }
        }
        let store = self.store()?;
        store.set_agent_env(slug, vars)?;
        let names = store.agent_env_names(slug)?;
        if names.len() > MAX_VARS {
            let added: Vec<&String> = vars.iter().map(|(k, _)| k).collect();
            for name in added {
                store.remove_agent_env(slug, name)?;
            }
            return Err(AgentError::Invalid(format!(
                "an agent has at most {MAX_VARS} variables"
            )));
        }
        Ok(names)
    }

    /// The names of agent `slug`'s variables.
    pub fn env_names(&self, slug: &str) -> Result<Vec<String>, AgentError> {
        self.get(slug)
            .ok_or_else(|| AgentError::NotFound(slug.to_owned()))?;
        Ok(self.store()?.agent_env_names(slug)?)
    }

    /// Removes a variable of agent `slug`.
    pub fn remove_env(&self, slug: &str, name: &str) -> Result<(), AgentError> {
        self.get(slug)
            .ok_or_else(|| AgentError::NotFound(slug.to_owned()))?;
        if self.store()?.remove_agent_env(slug, name)? {
            Ok(())
        } else {
            Err(AgentError::NotFound(format!("{slug}: variable {name}")))
        }
    }

    fn store(&self) -> Result<&crate::store::Store, AgentError> {
        self.store
            .as_deref()
            .ok_or_else(|| AgentError::Invalid("this daemon keeps no agent variables".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::agents::AgentDef;
    use crate::store::Store;

    #[test]
    fn variables_of_known_agents_only_and_names_only() {
        let store = Arc::new(Store::in_memory().expect("store"));
        let files = BTreeMap::from([("a".to_owned(), AgentDef::default())]);
        let (agents, _) = Agents::with_deployed(files, store).expect("load");
        let vars = vec![("TOKEN".to_owned(), "s3cret".to_owned())];
        assert_eq!(agents.set_env("a", &vars).expect("set"), ["TOKEN"]);
        assert!(matches!(
            agents.set_env("nope", &vars),
            Err(AgentError::NotFound(_))
        ));
        let reserved = vec![("ANTHROPIC_API_KEY".to_owned(), "x".to_owned())];
        assert!(matches!(
            agents.set_env("a", &reserved),
            Err(AgentError::Invalid(_))
        ));
        assert_eq!(agents.env_names("a").expect("names"), ["TOKEN"]);
        agents.remove_env("a", "TOKEN").expect("remove");
        assert!(agents.remove_env("a", "TOKEN").is_err());
    }
}
