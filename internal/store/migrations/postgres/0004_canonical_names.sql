-- Account names are kept in their canonical form (RFC 8265
-- UsernameCaseMapped, see package username). The same step as SQLite's
-- 0004; the byte-wise comparison, because under the nocase collation
-- "Alice" <> "alice" is false.
UPDATE users SET name = lower(name) WHERE name COLLATE "C" <> lower(name);
