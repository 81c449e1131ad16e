-- sandboxd's state: one database in the state directory.
-- Times are milliseconds since the Unix epoch; JSON columns hold serde_json text.

CREATE TABLE agents (
    slug        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,          -- the agent's JSON definition
    updated_at  INTEGER NOT NULL
);

CREATE TABLE sandboxes (
    id              TEXT PRIMARY KEY,   -- sb_…
    sandbox_id      TEXT NOT NULL UNIQUE, -- sbx-…, also the container name
    agent_slug      TEXT NOT NULL,
    agent_name      TEXT NOT NULL,
    agent           TEXT NOT NULL,      -- the definition when it was created
    owner           TEXT,
    cwd             TEXT NOT NULL,
    ttl_ms          INTEGER,
    policy          TEXT NOT NULL,      -- resolved egress policy
    model_token     TEXT NOT NULL,      -- its model-proxy token
    claude_program  TEXT NOT NULL,
    status          TEXT NOT NULL,
    error           TEXT,
    container_id    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE threads (
    id               TEXT PRIMARY KEY,  -- th_…
    sandbox_id       TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    session_id       TEXT NOT NULL,
    session_started  INTEGER NOT NULL,
    usage            TEXT NOT NULL,
    settings         TEXT NOT NULL,     -- model, permission mode, thinking
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
);
CREATE INDEX threads_by_sandbox ON threads(sandbox_id, created_at);

CREATE TABLE messages (
    thread_id  TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,           -- the UIMessage
    PRIMARY KEY (thread_id, position),
    UNIQUE (thread_id, id)
);

CREATE TABLE events (
    thread_id  TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,        -- 1, 2, … per thread
    at         INTEGER NOT NULL,
    body       TEXT NOT NULL,           -- the session update
    PRIMARY KEY (thread_id, seq)
);
