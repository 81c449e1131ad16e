-- Whether a client paused the sandbox (the E2B API's pause): it stays frozen, and its
-- deadline does not run, until a client resumes it (connect); a sandbox paused for
-- being idle (0) resumes on its next use instead.
ALTER TABLE sandboxes ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
