-- Accounts and their authenticator apps.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
	display_name  TEXT NOT NULL DEFAULT '',
	email         TEXT NOT NULL DEFAULT '',
	phone         TEXT NOT NULL DEFAULT '',
	password_hash TEXT NOT NULL,
	two_step      TEXT NOT NULL DEFAULT 'none' CHECK (two_step IN ('none', 'pending', 'active')),
	-- epoch changes on every password change, two-step reset, disable or
	-- revoke; a session made under an older epoch is dead.
	epoch         INTEGER NOT NULL DEFAULT 1,
	disabled      INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE authenticators (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	label      TEXT NOT NULL,
	secret     BLOB NOT NULL, -- sealed with the data folder's key
	confirmed  INTEGER NOT NULL DEFAULT 0,
	-- the last TOTP time step accepted; a step at or below it is a replay,
	-- across restarts too (RFC 6238 5.2).
	last_step  INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX authenticators_user ON authenticators (user_id);
