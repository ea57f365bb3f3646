-- Same meaning as ../sqlite/0007_portal.sql (read its comments).
CREATE TABLE app_passwords (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	key_hash   BYTEA NOT NULL UNIQUE,
	protocols  TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE INDEX app_passwords_user ON app_passwords (user_id);

CREATE TABLE user_events (
	id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_name TEXT NOT NULL,
	at        BIGINT NOT NULL,
	kind      TEXT NOT NULL,
	protocol  TEXT NOT NULL,
	remote    TEXT NOT NULL,
	result    TEXT NOT NULL,
	detail    TEXT NOT NULL
);

CREATE INDEX user_events_user ON user_events (user_name, id);
