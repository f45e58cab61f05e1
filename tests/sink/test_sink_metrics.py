"""Sensor metrics into a real PostgreSQL: the `metrics` table (migration 0006) and its hourly
aggregate; a journal row with a bad metric is rejected with its reason, the rest ship."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg

from ingest.readings import Metric, Reading, Stream, TimeFlag
from streetwatch.sink import TimeseriesSink
from tests.sink.sinkdata import T0, journal_with, raw_reading, site


def _metric(i: int, name: str, value: float, unit: str, device: str = "bin-1") -> Reading:
    ts = T0 + timedelta(minutes=i)
    return Reading(
        f"m{device}{name}{i:06d}:0",
        device,
        Stream.METRICS,
        ts,
        ts + timedelta(milliseconds=80),
        TimeFlag.OK,
        Metric(name, value, unit),
    )


def test_metric_samples_ship_and_aggregate_by_hour(pg_dsn: str, journal_path: Path) -> None:
    readings = [_metric(i, "fill_pct", 40.0 + i, "%") for i in range(90)]  # 08:00-09:29
    readings += [_metric(i, "noise_dba", 60.0, "dB(A)", "site-1") for i in range(0, 60, 10)]
    journal = journal_with(journal_path, readings)
    t = T0.timestamp()
    raw_reading(journal_path, "no-name", "metric", '{"value": 1, "unit": "%"}', t)
    raw_reading(journal_path, "text-value", "metric", '{"name": "x", "value": "a", "unit": ""}', t)
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    sink.drain()
    stats = sink.stats.snapshot()
    assert stats["rejected.wrong_type"] == 2
    sink.close()
    journal.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (96,)
        row = conn.execute(
            "SELECT device_id, metric, value, unit, time_flag FROM metrics"
            " WHERE device_id = 'bin-1' ORDER BY ts LIMIT 1"
        ).fetchone()
        assert row == ("bin-1", "fill_pct", 40.0, "%", "ok")
        hourly = conn.execute(
            "SELECT bucket, device_id, metric, unit, samples, avg_value, min_value, max_value"
            " FROM metrics_hourly ORDER BY device_id, bucket"
        ).fetchall()
        assert [(b, d, m, u, n) for b, d, m, u, n, *_ in hourly] == [
            (T0, "bin-1", "fill_pct", "%", 60),
            (T0 + timedelta(hours=1), "bin-1", "fill_pct", "%", 30),
            (T0, "site-1", "noise_dba", "dB(A)", 6),
        ]
        first = hourly[0]
        assert first[5:] == (40.0 + 59 / 2, 40.0, 99.0)
        rejects = [r for (r,) in conn.execute("SELECT detail FROM sink_rejects").fetchall()]
        assert len(rejects) == 2 and all("metric" in r or "value" in r for r in rejects)
