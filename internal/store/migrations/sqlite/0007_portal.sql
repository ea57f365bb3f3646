-- app_passwords: a random password for one device, signing in without a
-- code on the protocols listed (a comma-separated list of "imap", "pop3",
-- "smtp", "ldap"), never on the portal. key_hash is an HMAC (keyed with a
-- key derived from the sealing key) of the account name and the password;
-- the password itself is shown once and kept nowhere. Every change is
-- written to account_changes by the store, so that every instance drops
-- its cached account.
CREATE TABLE app_passwords (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	key_hash   BLOB NOT NULL UNIQUE,
	protocols  TEXT NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX app_passwords_user ON app_passwords (user_id);

-- user_events is each person's security history as the portal shows it:
-- sign-in decisions on their account and the changes made to it, written
-- in batches off the answer's path and pruned to the newest few per
-- account. Never a password, code or string.
CREATE TABLE user_events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_name TEXT NOT NULL,
	at        INTEGER NOT NULL, -- unix seconds
	kind      TEXT NOT NULL,    -- "sign_in" or "change"
	protocol  TEXT NOT NULL,
	remote    TEXT NOT NULL,
	result    TEXT NOT NULL,    -- allow/deny for sign-ins
	detail    TEXT NOT NULL     -- the decision's reason, or what changed
) STRICT;

CREATE INDEX user_events_user ON user_events (user_name, id);
