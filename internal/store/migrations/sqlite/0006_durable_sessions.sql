-- Sessions live here; each instance's memdb is a cache of this table.
-- key_hash is the session key: an HMAC (keyed with a key derived from the
-- sealing key) of the account name and the submitted string, cut to 16
-- bytes. Nothing else of the string is kept: not even the password's
-- length (whole says whether the whole string was the password, as for
-- service accounts; otherwise the split rule finds it again on a hit).
CREATE TABLE sessions (
	id         TEXT PRIMARY KEY,
	user_name  TEXT NOT NULL,
	key_hash   BLOB NOT NULL UNIQUE,
	protocol   TEXT NOT NULL,
	remote     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL, -- absolute end, unix seconds
	last_used  INTEGER NOT NULL, -- written at most every few seconds per session
	epoch      INTEGER NOT NULL,
	whole      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX sessions_user ON sessions (user_name);

-- failure_events is the lockout budget of the cluster: every instance
-- appends the failures it counted, the lockouts it started and the
-- successes that reset a budget, and adds the other instances' events
-- to its own counters at admission. key is a failure counter's key
-- ("user:alice", "addr:192.0.2.7"); str the failed string's keyed hash.
CREATE TABLE failure_events (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	key      TEXT NOT NULL,
	instance TEXT NOT NULL,
	kind     TEXT NOT NULL CHECK (kind IN ('fail', 'lock', 'reset')),
	str      TEXT NOT NULL DEFAULT '',
	at       INTEGER NOT NULL, -- unix nanoseconds
	until_at INTEGER NOT NULL DEFAULT 0,
	level    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX failure_events_key ON failure_events (key, at);
