-- Indexes for reading the audit log of one usage point or one requester over a time range (the
-- access report, the admin audit view and `admin audit show`); keep in step with
-- migrations/postgres/0009_audit_views.sql.
--
-- Keyed on (who, at): a view reads only the entries of its range, whatever the size of the log
-- before or after it, and sorts them by id (the chain's order) to page them.
CREATE INDEX audit_log_usage_point_at ON audit_log (usage_point, at);
CREATE INDEX audit_log_requester_at ON audit_log (requester, at);
