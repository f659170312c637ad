-- Deleting a bot: jobs keep their `bot_id` as history (jobs.bot_id references bots, so the
-- row stays), while a deleted bot is gone from the API: listed, read, changed and used by
-- no one.
ALTER TABLE bots ADD COLUMN deleted_at INTEGER;
