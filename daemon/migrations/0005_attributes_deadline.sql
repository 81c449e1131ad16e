-- What a client attached to a sandbox at creation (metadata to filter by, the token
-- its envd clients present), as JSON; and an absolute deadline (ms since the epoch)
-- past which the sandbox expires whatever its activity (the E2B API's timeout).
ALTER TABLE sandboxes ADD COLUMN attributes TEXT;
ALTER TABLE sandboxes ADD COLUMN deadline_ms INTEGER;
