-- Environment and facility sensors (`kind: sensor`): one row per metric sample. Plain
-- PostgreSQL: a BRIN index on the event time, a btree for one device's metric over time, and
-- the hourly aggregate as an ordinary view (computed at query time).
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
CREATE INDEX IF NOT EXISTS metrics_ts_brin ON metrics USING brin (ts);
CREATE INDEX IF NOT EXISTS metrics_device_metric_ts ON metrics (device_id, metric, ts);

CREATE OR REPLACE VIEW metrics_hourly AS
SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       device_id,
       metric,
       max(unit) AS unit,
       count(*) AS samples,
       avg(value) AS avg_value,
       min(value) AS min_value,
       max(value) AS max_value
FROM metrics
GROUP BY bucket, device_id, metric;
