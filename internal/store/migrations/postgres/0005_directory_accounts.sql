-- Directory-backed accounts (issue 12); see ../sqlite/0005 for the
-- meaning of source and external_id.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'directory', 'mail'));
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users (external_id) WHERE external_id IS NOT NULL;

-- A rename must drop the old name from every server's account cache too.
CREATE FUNCTION users_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO account_changes (name) VALUES (OLD.name);
	RETURN NULL;
END;
$$;
CREATE TRIGGER users_renamed AFTER UPDATE OF name ON users
	FOR EACH ROW WHEN (OLD.name <> NEW.name) EXECUTE FUNCTION users_renamed();
