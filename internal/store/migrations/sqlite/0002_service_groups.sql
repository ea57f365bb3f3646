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

-- account_changes logs the name of every account whose row, enrollment or
-- group membership changed, whichever process changed it. A running server
-- polls it to drop cached accounts and end sessions made before a security
-- change. Accepting a code (last_step) is not a change and is left out.
CREATE TABLE account_changes (
	seq  INTEGER PRIMARY KEY AUTOINCREMENT,
	name TEXT NOT NULL COLLATE NOCASE
) STRICT;

CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN
	INSERT INTO account_changes (name) VALUES (NEW.name);
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN
	INSERT INTO account_changes (name) VALUES (NEW.name);
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN
	INSERT INTO account_changes (name) VALUES (OLD.name);
END;
CREATE TRIGGER auth_changed_insert AFTER INSERT ON authenticators BEGIN
	INSERT INTO account_changes (name) SELECT name FROM users WHERE id = NEW.user_id;
END;
CREATE TRIGGER auth_changed_update AFTER UPDATE OF confirmed, label, secret ON authenticators BEGIN
	INSERT INTO account_changes (name) SELECT name FROM users WHERE id = NEW.user_id;
END;
CREATE TRIGGER auth_changed_delete AFTER DELETE ON authenticators BEGIN
	INSERT INTO account_changes (name) SELECT name FROM users WHERE id = OLD.user_id;
END;
CREATE TRIGGER members_changed_insert AFTER INSERT ON group_members BEGIN
	INSERT INTO account_changes (name) SELECT name FROM users WHERE id = NEW.user_id;
END;
CREATE TRIGGER members_changed_delete AFTER DELETE ON group_members BEGIN
	INSERT INTO account_changes (name) SELECT name FROM users WHERE id = OLD.user_id;
END;
