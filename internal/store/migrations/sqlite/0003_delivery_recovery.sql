-- Delivery methods (the e-mail addresses and phones that sign-in codes are
-- sent to) and recovery codes.
CREATE TABLE delivery_methods (
	id            INTEGER PRIMARY KEY,
	user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind          TEXT NOT NULL CHECK (kind IN ('email', 'sms')),
	-- sealed with the data folder's key: no phone number or address in clear
	address       BLOB NOT NULL,
	-- keyed hash of kind and address, to find the same address again
	address_hash  TEXT NOT NULL,
	verified      INTEGER NOT NULL DEFAULT 0,
	is_primary    INTEGER NOT NULL DEFAULT 0,
	-- while unverified: keyed hash of the confirmation code sent to it
	code_hash     TEXT NOT NULL DEFAULT '',
	code_expires  INTEGER NOT NULL DEFAULT 0,
	code_failures INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	verified_at   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE UNIQUE INDEX delivery_methods_address ON delivery_methods (user_id, address_hash);

-- recovery_codes holds keyed hashes only; a new set replaces the old one.
CREATE TABLE recovery_codes (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash       TEXT NOT NULL,
	used_at    INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX recovery_codes_hash ON recovery_codes (user_id, hash);
