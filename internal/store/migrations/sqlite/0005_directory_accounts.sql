-- Directory-backed accounts (issue 12). source says who checks the
-- person's password: 'local' (this store's hash), 'directory' (an
-- upstream LDAP bind; the row exists only for what stepgate owns:
-- authenticators, methods, recovery codes) or 'mail' (an upstream IMAP
-- login). external_id is the directory's stable identity of the entry
-- (entryUUID, objectGUID), so that a rename upstream keeps the row.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'directory', 'mail'));
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users (external_id) WHERE external_id IS NOT NULL;

-- A rename must drop the old name from every server's account cache too;
-- users_changed_update records only the new one.
CREATE TRIGGER users_renamed AFTER UPDATE OF name ON users WHEN OLD.name <> NEW.name BEGIN
	INSERT INTO account_changes (name) VALUES (OLD.name);
END;
