-- Account names are kept in their canonical form (RFC 8265
-- UsernameCaseMapped, see package username). Names were ASCII until now,
-- where that form is plain lower case; NOCASE made "Alice" and "alice" one
-- row already, so this cannot collide.
UPDATE users SET name = lower(name) WHERE name <> lower(name);
