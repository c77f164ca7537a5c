-- Ambiguous card lines (issue 17): why a candidate line is one, shown to the reviewer. Empty
-- for matched lines and for candidates kept because their descriptor looks like AI spend.
ALTER TABLE expense_lines ADD COLUMN candidate_reason TEXT NOT NULL DEFAULT '';
