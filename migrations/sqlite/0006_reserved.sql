-- Placeholder (see postgres/0006_reserved.sql): dropped when the branch
-- that owns 0006 is merged.
SELECT 1;
