-- What each sandbox consumed through the model proxy (requests and tokens), so
-- `modelUsage` survives a restart.
ALTER TABLE sandboxes ADD COLUMN model_usage TEXT;
