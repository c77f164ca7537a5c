-- Issue 7: expense lines, gateway spend. Amounts are integers: expense amounts in minor units
-- (spend positive), gateway costs in billionths of the major unit. A dedupe key is unique per
-- source, so the same file twice, or two overlapping exports, insert each row once.
CREATE TABLE expense_lines (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    file TEXT NOT NULL,
    line BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    merchant TEXT NOT NULL,
    payer_email TEXT NOT NULL,
    payer_name TEXT NOT NULL,
    department TEXT NOT NULL,
    product TEXT,
    candidate BOOLEAN NOT NULL,
    imported_at BIGINT NOT NULL,
    UNIQUE (source, dedupe_key)
);
CREATE INDEX expense_lines_occurred ON expense_lines(occurred_at);
CREATE TABLE gateway_spend (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    file TEXT NOT NULL,
    line BIGINT NOT NULL,
    period_start BIGINT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    team TEXT NOT NULL,
    end_user TEXT NOT NULL,
    api_key TEXT NOT NULL,
    tags TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    currency TEXT NOT NULL,
    product TEXT,
    imported_at BIGINT NOT NULL,
    UNIQUE (source, dedupe_key)
);
CREATE INDEX gateway_spend_period ON gateway_spend(period_start);
CREATE INDEX devices_owner ON devices(owner_email);
