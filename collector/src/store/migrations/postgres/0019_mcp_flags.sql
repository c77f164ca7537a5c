-- Issue 17: risk flags of configured MCP servers (plaintext_secret, shell_exec, file_write,
-- unpinned_package, remote_url), as the agent last reported them for the installed item:
-- known flag names, sorted and joined with ','; empty for other kinds and for servers without
-- risk. A flag says a risk is there, never a secret's value.
ALTER TABLE installed ADD COLUMN flags TEXT NOT NULL DEFAULT '';
