-- The battery-pack object of the API, kept as JSON text beside its row (a read model).
--
-- Listing packs is the busiest read of the API: building 100 JSON objects per request cost
-- PostgreSQL ~2 ms of CPU per page (bench/api.py). The object changes far less often than it is
-- read, so triggers rebuild it whenever something it shows changes, in the same transaction, and a
-- page is 100 stored texts. It lives in its own table so that the frequent narrow updates of
-- `batteries` (last_seen_at, online, reported state) do not copy it. The two fields that change with
-- every command, `status` and `updated_at`, are not stored: readers put them in front from the row
-- (api/battery_packs/queries.py, PACK_BODY). So that they need not cut the text, what is stored is
-- the object's text after its opening brace (`tail`).
--
-- battery_pack_tails(ids) is the one definition of the object; change it with a new migration that
-- replaces the function and rebuilds the rows (battery_pack_views_refresh).

CREATE TABLE battery_pack_views (
    battery_id  bigint PRIMARY KEY REFERENCES batteries (id) ON DELETE CASCADE,
    tail        text NOT NULL   -- the JSON object's text without its first character, '{'
);

CREATE FUNCTION packfleet_iso(ts timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The objects of these packs: one query for any number (a bulk import builds its 50,000 objects in
-- one join). PL/pgSQL rather than SQL so that the triggers' calls, one pack each, reuse its plan.
CREATE FUNCTION battery_pack_tails(ids bigint[]) RETURNS TABLE (battery_id bigint, tail text)
LANGUAGE plpgsql STABLE ROWS 1 AS $$  -- ROWS: most calls are a trigger's, for one pack
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT b.id, substr(json_build_object(
        'id', b.id, 'asset_tag', b.serial_number, 'company', b.company, 'status_label', b.status_label,
        'model', b.model, 'manufacturer_name', b.manufacturer_name, 'location', b.location,
        'warranty_months', b.warranty_months::text,
        'battery_pack', json_build_object(
            'battery_cell_chemistry', b.cell_chemistry, 'battery_pack_nominal_voltage', b.nominal_voltage,
            'battery_pack_nominal_charge_capacity', b.nominal_capacity, 'bms_type', b.bms_type,
            'battery_cell_type', b.cell_type, 'battery_pack_casing', b.casing),
        'health_score', b.health_score::float8, 'dealer_id', b.dealer_id,
        'owner_id', b.owner_id, 'owner_name', c.name,
        'allocation', CASE WHEN a.id IS NOT NULL THEN json_build_object(
            'target_category', a.target_category, 'target_individual', a.target_individual,
            'status_label', a.status_label, 'allocated_at', packfleet_iso(a.allocated_at)) END,
        'created_at', packfleet_iso(b.created_at))::text, 2)
    FROM unnest(ids) AS pack (id)
    JOIN batteries b ON b.id = pack.id
    LEFT JOIN consumers c ON c.id = b.owner_id
    LEFT JOIN battery_allocations a ON a.battery_id = b.id AND a.released_at IS NULL;
END $$;

-- Rebuild the stored objects of these packs.
CREATE FUNCTION battery_pack_views_refresh(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE battery_pack_views v SET tail = j.tail
    FROM battery_pack_tails(ids) j WHERE v.battery_id = j.battery_id;
END $$;

INSERT INTO battery_pack_views (battery_id, tail)
SELECT battery_id, tail FROM battery_pack_tails(ARRAY(SELECT id FROM batteries));

-- New packs: one statement for a whole bulk import.
CREATE FUNCTION battery_pack_views_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO battery_pack_views (battery_id, tail)
    SELECT battery_id, tail FROM battery_pack_tails(ARRAY(SELECT id FROM new_packs));
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_pack_view_insert
    AFTER INSERT ON batteries REFERENCING NEW TABLE AS new_packs
    FOR EACH STATEMENT EXECUTE FUNCTION battery_pack_views_insert();

-- Changed packs: only when a value the stored object shows changes. Ingest's and control's updates
-- (last seen, reported and desired state, status) leave these alone and cost nothing here.
CREATE FUNCTION battery_pack_views_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM battery_pack_views_refresh(ARRAY[NEW.id]);
    RETURN NULL;
END $$;

CREATE TRIGGER batteries_pack_view_update
    AFTER UPDATE OF serial_number, company, status_label, model, manufacturer_name, location,
        warranty_months, cell_chemistry, nominal_voltage, nominal_capacity, bms_type, cell_type, casing,
        health_score, dealer_id, owner_id, created_at
    ON batteries FOR EACH ROW
    WHEN ((OLD.serial_number, OLD.company, OLD.status_label, OLD.model, OLD.manufacturer_name, OLD.location,
           OLD.warranty_months, OLD.cell_chemistry, OLD.nominal_voltage, OLD.nominal_capacity, OLD.bms_type,
           OLD.cell_type, OLD.casing, OLD.health_score, OLD.dealer_id, OLD.owner_id, OLD.created_at)
          IS DISTINCT FROM
          (NEW.serial_number, NEW.company, NEW.status_label, NEW.model, NEW.manufacturer_name, NEW.location,
           NEW.warranty_months, NEW.cell_chemistry, NEW.nominal_voltage, NEW.nominal_capacity, NEW.bms_type,
           NEW.cell_type, NEW.casing, NEW.health_score, NEW.dealer_id, NEW.owner_id, NEW.created_at))
    EXECUTE FUNCTION battery_pack_views_update();

-- The current allocation and the owner's name are shown too.
CREATE FUNCTION battery_pack_views_refresh_allocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM battery_pack_views_refresh(ARRAY[CASE WHEN TG_OP = 'DELETE' THEN OLD.battery_id ELSE NEW.battery_id END]);
    RETURN NULL;
END $$;

CREATE TRIGGER battery_allocations_pack_view
    AFTER INSERT OR UPDATE OR DELETE ON battery_allocations
    FOR EACH ROW EXECUTE FUNCTION battery_pack_views_refresh_allocation();

CREATE FUNCTION battery_pack_views_refresh_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM battery_pack_views_refresh(ARRAY(SELECT id FROM batteries WHERE owner_id = NEW.id));
    RETURN NULL;
END $$;

CREATE TRIGGER consumers_pack_view
    AFTER UPDATE OF name ON consumers
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION battery_pack_views_refresh_owner();
