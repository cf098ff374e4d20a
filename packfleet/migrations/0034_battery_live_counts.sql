-- How many live (not deleted) batteries each dealer has, kept exact by triggers.
--
-- Every pack list answers its total in X-Total-Count. For the lists people open most (all packs,
-- a dealer's packs) counting the rows cost PostgreSQL 0.8 ms per request at 10,000 batteries and
-- grows with the fleet; this table answers in one row per dealer. Filtered lists still count rows.
-- dealer_key is the dealer's id, 0 for batteries without a dealer.
--
-- Lock order: a transaction changes the rows of several dealers in ascending dealer_key order
-- (the INSERT ... ORDER BY below; bulk soft deletes lock them first, see api/battery_packs).

CREATE TABLE battery_live_counts (
    dealer_key  bigint PRIMARY KEY,
    live        bigint NOT NULL  -- no CHECK (live >= 0): it would refuse the -1 an upsert proposes
);

INSERT INTO battery_live_counts (dealer_key, live)
SELECT coalesce(dealer_id, 0), count(*) FROM batteries WHERE deleted_at IS NULL GROUP BY 1;

CREATE FUNCTION battery_live_counts_add(keys bigint[], deltas bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO battery_live_counts AS n (dealer_key, live)
    SELECT k, sum(d) FROM unnest(keys, deltas) AS t(k, d) GROUP BY k HAVING sum(d) <> 0 ORDER BY k
    ON CONFLICT (dealer_key) DO UPDATE SET live = n.live + EXCLUDED.live
$$;

-- Inserts and (hard) deletes: once per statement, so a bulk import touches each dealer's row once.
CREATE FUNCTION battery_live_counts_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM battery_live_counts_add(
        array_agg(coalesce(dealer_id, 0)),
        array_agg(CASE TG_OP WHEN 'INSERT' THEN 1::bigint ELSE -1::bigint END))
    FROM changed_batteries WHERE deleted_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_live_count_insert
    AFTER INSERT ON batteries REFERENCING NEW TABLE AS changed_batteries
    FOR EACH STATEMENT EXECUTE FUNCTION battery_live_counts_statement();

CREATE TRIGGER batteries_live_count_delete
    AFTER DELETE ON batteries REFERENCING OLD TABLE AS changed_batteries
    FOR EACH STATEMENT EXECUTE FUNCTION battery_live_counts_statement();

-- Soft deletes, undeletes and moves to another dealer: row by row (rare, and transition tables
-- cannot be limited to these columns, so a statement trigger would also run for ingest's updates).
CREATE FUNCTION battery_live_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys bigint[] := '{}';
    deltas bigint[] := '{}';
BEGIN
    IF OLD.deleted_at IS NULL THEN
        keys := keys || coalesce(OLD.dealer_id, 0);
        deltas := deltas || -1::bigint;
    END IF;
    IF NEW.deleted_at IS NULL THEN
        keys := keys || coalesce(NEW.dealer_id, 0);
        deltas := deltas || 1::bigint;
    END IF;
    PERFORM battery_live_counts_add(keys, deltas);
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_live_count_update
    AFTER UPDATE OF dealer_id, deleted_at ON batteries
    FOR EACH ROW WHEN (OLD.dealer_id IS DISTINCT FROM NEW.dealer_id
                       OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
    EXECUTE FUNCTION battery_live_counts_change();
