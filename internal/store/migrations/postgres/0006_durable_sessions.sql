-- Same meaning as ../sqlite/0006_durable_sessions.sql (read its comments).
CREATE TABLE sessions (
	id         TEXT PRIMARY KEY,
	user_name  TEXT NOT NULL,
	key_hash   BYTEA NOT NULL UNIQUE,
	protocol   TEXT NOT NULL,
	remote     TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	last_used  BIGINT NOT NULL,
	epoch      BIGINT NOT NULL,
	whole      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX sessions_user ON sessions (user_name);

CREATE TABLE failure_events (
	id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key      TEXT NOT NULL,
	instance TEXT NOT NULL,
	kind     TEXT NOT NULL CHECK (kind IN ('fail', 'lock', 'reset')),
	str      TEXT NOT NULL DEFAULT '',
	at       BIGINT NOT NULL,
	until_at BIGINT NOT NULL DEFAULT 0,
	level    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX failure_events_key ON failure_events (key, at);
