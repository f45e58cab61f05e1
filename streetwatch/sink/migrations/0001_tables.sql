-- Time-series tables, one per record type, and the sink's bookkeeping.
-- `ts` is the event time: device time when the journal judged it plausible, else receive time.
-- Every UNIQUE key includes `ts` because TimescaleDB requires the partitioning column in it;
-- the key alone already identifies a record, so this changes nothing about idempotency.

CREATE TABLE IF NOT EXISTS gps_fixes (
    ts          timestamptz      NOT NULL,
    key         text             NOT NULL,
    device_id   text             NOT NULL,
    device_ts   timestamptz,
    received_ts timestamptz      NOT NULL,
    time_flag   text             NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    speed_kmh   real,
    heading     real,
    hdop        real,
    sats        smallint,
    valid       boolean          NOT NULL,
    source      text             NOT NULL,
    step_m      real,
    UNIQUE (key, ts)
);
COMMENT ON COLUMN gps_fixes.step_m IS
    'metres from the previous valid fix of the same device (gaps over 5 minutes not bridged)';

CREATE TABLE IF NOT EXISTS geomag_fields (
    ts          timestamptz      NOT NULL,
    key         text             NOT NULL,
    device_id   text             NOT NULL,
    device_ts   timestamptz,
    received_ts timestamptz      NOT NULL,
    time_flag   text             NOT NULL,
    bay         text,
    x           real             NOT NULL,
    y           real             NOT NULL,
    z           real             NOT NULL,
    UNIQUE (key, ts)
);

CREATE TABLE IF NOT EXISTS geomag_states (
    ts          timestamptz      NOT NULL,
    key         text             NOT NULL,
    device_id   text             NOT NULL,
    device_ts   timestamptz,
    received_ts timestamptz      NOT NULL,
    time_flag   text             NOT NULL,
    bay         text,
    occupied    boolean          NOT NULL,
    UNIQUE (key, ts)
);

CREATE TABLE IF NOT EXISTS drone_telemetry (
    ts           timestamptz      NOT NULL,
    key          text             NOT NULL,
    device_id    text             NOT NULL,
    device_ts    timestamptz,
    received_ts  timestamptz      NOT NULL,
    time_flag    text             NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    alt_m        real             NOT NULL,
    heading      real,
    gimbal_pitch real,
    UNIQUE (key, ts)
);

-- Snapshot metadata only: the JPEG stays on the box (journal, evidence packages).
CREATE TABLE IF NOT EXISTS snapshots (
    ts          timestamptz NOT NULL,
    key         text        NOT NULL,
    device_id   text        NOT NULL,
    device_ts   timestamptz,
    received_ts timestamptz NOT NULL,
    time_flag   text        NOT NULL,
    width       integer     NOT NULL,
    height      integer     NOT NULL,
    jpeg_bytes  integer,
    UNIQUE (key, ts)
);

-- One row per update of a situation: `ts` is the update's last_seen.
CREATE TABLE IF NOT EXISTS observations (
    ts          timestamptz NOT NULL,
    key         text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    kind        text        NOT NULL,
    device_id   text        NOT NULL,
    subject     text,
    subject_id  text,
    zone_id     text,
    zone_kind   text,
    state       text,
    lon         double precision,
    lat         double precision,
    data        jsonb       NOT NULL,
    UNIQUE (key, ts)
);

CREATE TABLE IF NOT EXISTS case_events (
    ts        timestamptz NOT NULL,
    case_id   text        NOT NULL,
    event     text        NOT NULL,
    origin    text        NOT NULL,
    rule_id   text,
    category  text,
    zone_id   text,
    data      jsonb       NOT NULL,
    UNIQUE (case_id, event, ts)
);

-- Where each box's sink stopped, per local source table; written in the same transaction as
-- the rows it covers. `last_key` is the idempotent key of the record at `seq`: a journal that
-- was replaced (seq restarting at 1) no longer has that key there, and the sink starts over.
CREATE TABLE IF NOT EXISTS sink_cursors (
    origin     text        NOT NULL,
    source     text        NOT NULL,
    seq        bigint      NOT NULL,
    last_key   text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, source)
);

-- Records the sink could not ship, with the reason; they are skipped, not retried.
CREATE TABLE IF NOT EXISTS sink_rejects (
    origin      text        NOT NULL,
    source      text        NOT NULL,
    seq         bigint      NOT NULL,
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    record      text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, source, seq)
);
