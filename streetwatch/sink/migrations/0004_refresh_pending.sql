-- Ranges of TimescaleDB continuous aggregates to refresh because late data landed behind
-- their refresh policy's window (see streetwatch/sink/refresh.py). Unused in plain mode, where
-- the aggregates are views, but created in both so the schema versions stay the same.
CREATE TABLE IF NOT EXISTS sink_refresh_pending (
    origin    text NOT NULL,
    aggregate text NOT NULL,
    start_ts  timestamptz NOT NULL,
    end_ts    timestamptz NOT NULL,
    noted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, aggregate)
);
