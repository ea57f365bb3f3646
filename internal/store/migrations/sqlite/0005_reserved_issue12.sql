-- Placeholder for issue 12's migration 0005 (directory accounts), so that
-- 0006 can be numbered as reserved while issue 12 is on its own branch.
-- When the two branches meet, issue 12's 0005 replaces this file: delete
-- it then (two files numbered 0005 stop every start with "expected number").
SELECT 1;
