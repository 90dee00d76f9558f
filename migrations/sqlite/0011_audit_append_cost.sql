-- The audit log's requester index goes (keep in step with migrations/postgres/0011_audit_append_cost.sql).
--
-- Delivery appends one entry per subscriber account and claim: thousands of entries per second
-- whose requesters are scattered over the whole index, so every claim rewrote most of its
-- pages (on SQLite, a 4 KiB WAL frame per page touched), which tripled the CPU cost of a
-- notification. A view by requester now reads its time range through the index on `at`
-- (always appended at its end, so nearly free to keep) and keeps that requester's entries;
-- views by usage point keep their own index.
DROP INDEX audit_log_requester_at;
CREATE INDEX audit_log_at ON audit_log (at);
