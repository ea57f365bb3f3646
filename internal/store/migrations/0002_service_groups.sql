-- Service accounts (applications that bind with a password alone) and
-- groups, for the LDAP directory view.
ALTER TABLE users ADD COLUMN service INTEGER NOT NULL DEFAULT 0;

CREATE TABLE groups (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE COLLATE NOCASE
) STRICT;

CREATE TABLE group_members (
	group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
	user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (group_id, user_id)
) STRICT;

CREATE INDEX group_members_user ON group_members (user_id);

-- generation moves on every change a cache of accounts must see; the
-- running server polls it, so changes made by the CLI reach it.
INSERT INTO meta (key, value) VALUES ('generation', '0') ON CONFLICT (key) DO NOTHING;

CREATE TRIGGER users_gen_insert AFTER INSERT ON users BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER users_gen_update AFTER UPDATE ON users BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER users_gen_delete AFTER DELETE ON users BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER auth_gen_insert AFTER INSERT ON authenticators BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
-- last_step is left out on purpose: accepting a code is not an account change.
CREATE TRIGGER auth_gen_update AFTER UPDATE OF confirmed, label, secret ON authenticators BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER auth_gen_delete AFTER DELETE ON authenticators BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER members_gen_insert AFTER INSERT ON group_members BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
CREATE TRIGGER members_gen_delete AFTER DELETE ON group_members BEGIN
	UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation';
END;
