-- Environment and facility sensors (`kind: sensor`): one row per metric sample, in a hypertable
-- (the sink sets its chunk interval, compression and retention at every start, like the
-- others'), and its hourly continuous aggregate, refreshed by a policy with real-time
-- aggregation on; created WITH NO DATA because migrations run in a transaction.
CREATE TABLE IF NOT EXISTS metrics (
    ts          timestamptz      NOT NULL,
    key         text             NOT NULL,
    device_id   text             NOT NULL,
    device_ts   timestamptz,
    received_ts timestamptz      NOT NULL,
    time_flag   text             NOT NULL,
    metric      text             NOT NULL,
    value       double precision NOT NULL,
    unit        text             NOT NULL,
    UNIQUE (key, ts)
);
CREATE INDEX IF NOT EXISTS metrics_device_metric_ts ON metrics (device_id, metric, ts);
SELECT create_hypertable('metrics', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => true, migrate_data => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       device_id,
       metric,
       max(unit) AS unit,
       count(*) AS samples,
       avg(value) AS avg_value,
       min(value) AS min_value,
       max(value) AS max_value
FROM metrics
GROUP BY bucket, device_id, metric
WITH NO DATA;

SELECT add_continuous_aggregate_policy('metrics_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => true);
