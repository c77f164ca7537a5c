-- SCIM 2.0 provisioning (issue 16): Okta and Entra ID push the directory to /scim/v2.
--
-- A `scim` role for the token they authenticate with (the role CHECKs replaced as in 0006).
-- The console refuses scim tokens at sign-in, so no scim session is written.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy', 'scim'));
ALTER TABLE console_sessions DROP CONSTRAINT console_sessions_role_check;
ALTER TABLE console_sessions ADD CONSTRAINT console_sessions_role_check
    CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy', 'scim'));

-- Whether a person is an active seat: a deprovisioned person (SCIM active=false or DELETE)
-- keeps their row, so history still joins, but is false here.
ALTER TABLE people ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;

-- SCIM resources as the identity provider wrote them (kind 'User' or 'Group'). `name` is the
-- lowercased userName or displayName, unique per kind (SCIM's uniqueness); `resource` is the
-- JSON document without id and meta, which the server adds; `version` is the ETag.
CREATE TABLE scim_resources (
    kind TEXT NOT NULL CHECK (kind IN ('User', 'Group')),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    resource TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
);
CREATE INDEX scim_resources_created ON scim_resources(kind, created_at, id);
