-- TimescaleDB: continuous aggregates, refreshed by policies, with real-time aggregation on so
-- the newest, not yet materialised buckets are included. Created WITH NO DATA because a
-- continuous aggregate WITH DATA cannot be created inside a transaction (migrations run in one);
-- the refresh policy fills them.
CREATE MATERIALIZED VIEW IF NOT EXISTS occupancy_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       bay,
       device_id,
       count(*) AS samples,
       sum(CASE WHEN occupied THEN 1 ELSE 0 END) AS occupied_samples,
       avg(CASE WHEN occupied THEN 1.0 ELSE 0.0 END)::double precision AS occupied_ratio
FROM geomag_states
GROUP BY bucket, bay, device_id
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS violations_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', ts) AS bucket,
       zone_id,
       category,
       count(*) AS violations
FROM case_events
WHERE event = 'opened'
GROUP BY bucket, zone_id, category
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_distance_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', ts) AS bucket,
       device_id,
       coalesce(sum(step_m::double precision), 0) / 1000.0 AS distance_km,
       count(*) AS fixes
FROM gps_fixes
WHERE valid
GROUP BY bucket, device_id
WITH NO DATA;

SELECT add_continuous_aggregate_policy('occupancy_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('violations_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT add_continuous_aggregate_policy('vehicle_distance_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
