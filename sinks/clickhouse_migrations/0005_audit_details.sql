-- 0005: the audit event's details, hashed into the chain: `practiceflow audit verify` needs them
-- (landed on main as an ADDED_COLUMNS entry while the migrations were being written; a database that
-- already has the column keeps it).
ALTER TABLE {db}.audit_events ADD COLUMN IF NOT EXISTS details Map(String, String);
