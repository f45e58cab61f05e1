-- TimescaleDB: every time-series table becomes a hypertable partitioned on `ts`. The chunk
-- interval here is the initial one; the sink sets the configured interval (and the
-- compression and retention policies) at every start, see streetwatch/sink/policies.py.
SELECT create_hypertable('gps_fixes', 'ts', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('geomag_fields', 'ts', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('geomag_states', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('drone_telemetry', 'ts', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('snapshots', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('observations', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => true, migrate_data => true);
SELECT create_hypertable('case_events', 'ts', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => true, migrate_data => true);
