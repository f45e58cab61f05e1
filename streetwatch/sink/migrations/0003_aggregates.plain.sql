-- Plain PostgreSQL: the aggregates as ordinary views (computed at query time).
CREATE OR REPLACE VIEW occupancy_hourly AS
SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       bay,
       device_id,
       count(*) AS samples,
       sum(CASE WHEN occupied THEN 1 ELSE 0 END) AS occupied_samples,
       avg(CASE WHEN occupied THEN 1.0 ELSE 0.0 END)::double precision AS occupied_ratio
FROM geomag_states
GROUP BY bucket, bay, device_id;

CREATE OR REPLACE VIEW violations_daily AS
SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       zone_id,
       category,
       count(*) AS violations
FROM case_events
WHERE event = 'opened'
GROUP BY bucket, zone_id, category;

CREATE OR REPLACE VIEW vehicle_distance_daily AS
SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       device_id,
       coalesce(sum(step_m::double precision), 0) / 1000.0 AS distance_km,
       count(*) AS fixes
FROM gps_fixes
WHERE valid
GROUP BY bucket, device_id;
