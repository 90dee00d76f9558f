-- Leases: which instance leads what (a source's task) when several share one database.
-- Times are unix milliseconds; a holder renews well before expires_at (src/lease.rs).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Change feed between instances (src/store/changes.rs): each statement that writes grants or
-- consents notifies 'access', each that adds publications or outbox entries notifies 'work',
-- on channel quoalise_changes, delivered at commit. Whoever writes (an instance, the admin
-- command line) needs nothing else to wake the others.
CREATE FUNCTION quoalise_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quoalise_changes', TG_ARGV[0]);
    RETURN NULL;
END
$$;
CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION quoalise_notify_change('access');
CREATE TRIGGER consents_changed AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH STATEMENT EXECUTE FUNCTION quoalise_notify_change('access');
CREATE TRIGGER publications_added AFTER INSERT ON publications
    FOR EACH STATEMENT EXECUTE FUNCTION quoalise_notify_change('work');
CREATE TRIGGER outbox_added AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION quoalise_notify_change('work');
