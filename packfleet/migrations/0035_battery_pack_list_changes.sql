-- Pages of the battery-pack list are kept in each API process's memory until something a list can
-- show changes (api/battery_packs/page_cache.py). Every statement that may change one says so on
-- the channel `packfleet_battery_packs`, delivered when its transaction commits; PostgreSQL folds
-- the notices of one transaction into one.
--
-- What a list shows, filters and sorts on is the stored object (battery_pack_views: pack fields,
-- owner, dealer, allocation) and, from the row, status, updated_at and deleted_at. Ingest's updates
-- (last_seen_at, online, reported state) name none of these columns and notify nothing.

CREATE FUNCTION battery_pack_lists_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('packfleet_battery_packs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_list_rows_changed
    AFTER INSERT OR DELETE OR TRUNCATE ON batteries
    FOR EACH STATEMENT EXECUTE FUNCTION battery_pack_lists_changed();

CREATE TRIGGER batteries_list_fields_changed
    AFTER UPDATE OF status, updated_at, deleted_at ON batteries
    FOR EACH STATEMENT EXECUTE FUNCTION battery_pack_lists_changed();

CREATE TRIGGER battery_pack_views_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON battery_pack_views
    FOR EACH STATEMENT EXECUTE FUNCTION battery_pack_lists_changed();
