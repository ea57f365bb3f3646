-- Placeholder for issue 12's migration 0005 (see ../sqlite/0005_reserved_issue12.sql):
-- issue 12's file replaces it when the branches meet.
SELECT 1;
