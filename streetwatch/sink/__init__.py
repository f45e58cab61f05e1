"""Time series from the journal and the case store into PostgreSQL/TimescaleDB (issue 6)."""

from streetwatch.sink.migrate import Mode, apply_migrations
from streetwatch.sink.sink import TimeseriesSink
from streetwatch.sink.stats import SinkStats

__all__ = ["Mode", "SinkStats", "TimeseriesSink", "apply_migrations"]
