-- Environment variables of agents (`sandboxd env set`), given to their tools and hooks.
-- Values are secrets: they are never returned by the API, printed or logged.
CREATE TABLE agent_env (
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (slug, name)
);
