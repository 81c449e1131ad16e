-- What a thread's agent runtime keeps between turns (JSON; Codex: the running token
-- totals its session reports, so each turn's usage is its own).
ALTER TABLE threads ADD COLUMN runtime_state TEXT;
