-- The policy role (issue 20): a token that reads only the policy exports
-- (GET /api/v1/policy/{format}) for DNS filters, MDM and EDR.
--
-- Both role CHECKs are column constraints, named <table>_role_check by PostgreSQL (0005
-- replaced the one of api_tokens the same way). The console refuses policy tokens at sign-in,
-- so no policy session is ever written; the CHECK only keeps the two lists of roles the same.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy'));
ALTER TABLE console_sessions DROP CONSTRAINT console_sessions_role_check;
ALTER TABLE console_sessions ADD CONSTRAINT console_sessions_role_check
    CHECK (role IN ('admin', 'procurement', 'security', 'viewer', 'policy'));
