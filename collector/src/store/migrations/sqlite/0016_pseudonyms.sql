-- Pseudonymous mode (issue 21): each pseudonym the collector stored in place of an email,
-- user or name, with the identity sealed (AES-256-GCM under a key derived from the collector's
-- identity key, which the database never holds), so an admin can reveal one person for one
-- product. Rows of an erased person are deleted by the erasure.
CREATE TABLE pseudonyms (
    pseudonym TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
);
-- Erasure that holds: a keyed hash (HMAC-SHA256, never the plain value) of each erased email
-- and name, and the tombstone it became, so a later import or upload naming it is stored under
-- the tombstone instead of bringing the person back.
CREATE TABLE erased_identities (
    hash TEXT PRIMARY KEY,
    tombstone TEXT NOT NULL
);
