-- Issue 17, "a reviewer can teach the collector": a candidate card descriptor mapped to a
-- product. `descriptor` is the normalised descriptor (the merchant tokens joined by one
-- space), one mapping per descriptor. An expense line resolved by a mapping carries its id in
-- `mapping_id`, so an undo turns exactly those lines back into candidates.
CREATE TABLE descriptor_mappings (
    id BIGSERIAL PRIMARY KEY,
    descriptor TEXT NOT NULL UNIQUE,
    product TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
ALTER TABLE expense_lines ADD COLUMN mapping_id BIGINT;
CREATE INDEX expense_lines_mapping ON expense_lines (mapping_id) WHERE mapping_id IS NOT NULL;
