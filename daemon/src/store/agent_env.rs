//! Agent environment variables in the state database: names are listed, values are
//! only read to start a turn.

use std::time::SystemTime;

use rusqlite::params;

use super::{millis, Store, StoreError};

impl Store {
    /// Sets (inserts or replaces) variables of an agent, all or none.
    pub fn set_agent_env(&self, slug: &str, vars: &[(String, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (name, value) in vars {
            tx.execute(
                "INSERT INTO agent_env (slug, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (slug, name) DO UPDATE SET value = ?3, updated_at = ?4",
                params![slug, name, value, millis(SystemTime::now())],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The names of an agent's variables, sorted.
    pub fn agent_env_names(&self, slug: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM agent_env WHERE slug = ?1 ORDER BY name")?;
        let rows = stmt.query_map([slug], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An agent's variables with their values (for a turn's environment only).
    pub fn agent_env(&self, slug: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, value FROM agent_env WHERE slug = ?1 ORDER BY name")?;
        let rows = stmt.query_map([slug], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes one variable; returns whether it existed.
    pub fn remove_agent_env(&self, slug: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM agent_env WHERE slug = ?1 AND name = ?2",
            params![slug, name],
        )?;
        Ok(n > 0)
    }

    /// Removes every variable of an agent (it was deleted).
    pub fn forget_agent_env(&self, slug: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM agent_env WHERE slug = ?1", params![slug])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_set_listed_and_removed() {
        let store = Store::in_memory().expect("store");
        let vars = [
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ];
        store.set_agent_env("x", &vars).expect("set");
        store
            .set_agent_env("x", &[("A".to_owned(), "one".to_owned())])
            .expect("replace");
        assert_eq!(store.agent_env_names("x").expect("names"), ["A", "B"]);
        assert_eq!(store.agent_env("x").expect("values")[0].1, "one");
        assert!(store.agent_env_names("y").expect("other").is_empty());
        assert!(store.remove_agent_env("x", "A").expect("remove"));
        assert!(!store.remove_agent_env("x", "A").expect("again"));
    }
}
