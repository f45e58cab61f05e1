-- Plain PostgreSQL: BRIN indexes on the event time (rows arrive roughly in time order, so a
-- BRIN index is tiny and prunes time ranges well) and per-device btree indexes for look-ups.
CREATE INDEX IF NOT EXISTS gps_fixes_ts_brin ON gps_fixes USING brin (ts);
CREATE INDEX IF NOT EXISTS geomag_fields_ts_brin ON geomag_fields USING brin (ts);
CREATE INDEX IF NOT EXISTS geomag_states_ts_brin ON geomag_states USING brin (ts);
CREATE INDEX IF NOT EXISTS drone_telemetry_ts_brin ON drone_telemetry USING brin (ts);
CREATE INDEX IF NOT EXISTS snapshots_ts_brin ON snapshots USING brin (ts);
CREATE INDEX IF NOT EXISTS observations_ts_brin ON observations USING brin (ts);
CREATE INDEX IF NOT EXISTS case_events_ts_brin ON case_events USING brin (ts);
