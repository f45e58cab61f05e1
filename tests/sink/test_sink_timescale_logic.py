"""The TimescaleDB decisions, as pure functions: whether to fall back to plain PostgreSQL,
which policies differ and what to run, which aggregate ranges late data needs refreshed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streetwatch.sink.cli import ROW_ESTIMATE
from streetwatch.sink.migrate import ExtensionFacts, Mode, Plan, extension_plan
from streetwatch.sink.migrate import preloaded_libraries as preloaded
from streetwatch.sink.policies import HYPERTABLES, Current, plan_policies
from streetwatch.sink.refresh import AGGREGATES, MARGIN, late_ranges
from tests.sink.sinkdata import settings

DAY = timedelta(days=1)


# -- falling back ----------------------------------------------------------------------------


def test_shared_preload_libraries_are_parsed() -> None:
    assert preloaded("") == set()
    assert preloaded("timescaledb") == {"timescaledb"}
    assert preloaded('pg_stat_statements, "$libdir/timescaledb.so"') == {
        "pg_stat_statements",
        "timescaledb",
    }
    assert "timescaledb" not in preloaded("timescaledb_toolkit")


@pytest.mark.parametrize(
    ("facts", "plan", "why"),
    [
        (ExtensionFacts(None, False, False), Plan.PLAIN, "not installed on the server"),
        (ExtensionFacts(None, False, None), Plan.PLAIN, "not installed on the server"),
        # the case a real TimescaleDB 2.28 showed: installed, not preloaded -> FATAL if tried
        (ExtensionFacts(None, True, False), Plan.PLAIN, "not in shared_preload_libraries"),
        (ExtensionFacts(None, True, True), Plan.CREATE, "preloaded"),
        (ExtensionFacts(None, True, None), Plan.CREATE, "hidden"),  # a role that may not SHOW
        (ExtensionFacts("2.28.0", True, True), Plan.USE, "2.28.0"),
        (ExtensionFacts("2.28.0", True, None), Plan.USE, "2.28.0"),
    ],
)
def test_extension_plan(facts: ExtensionFacts, plan: Plan, why: str) -> None:
    decided, reason = extension_plan(facts)
    assert decided is plan
    assert why in reason


def test_enabled_but_not_preloaded_is_an_error_not_a_fallback() -> None:
    with pytest.raises(RuntimeError, match="not in the server's shared_preload_libraries"):
        extension_plan(ExtensionFacts("2.28.0", True, False))


# -- policies: only what differs -------------------------------------------------------------


def _matching(chunk_h: int = 24, compress: int | None = 7, keep: int | None = 400) -> dict:
    return {
        table: Current(
            chunk=timedelta(hours=chunk_h),
            compression_enabled=True,
            compress_after=[] if compress is None else [timedelta(days=compress)],
            drop_after=[] if keep is None else [timedelta(days=keep)],
        )
        for table in HYPERTABLES
    }


def _sql(changes: list) -> list[str]:
    return [statement for change in changes for statement, _ in change.statements]


def test_a_catalog_that_matches_needs_nothing() -> None:
    assert plan_policies(settings(), _matching()) == []
    off = settings(compress_after_days=None, retention_days=None)
    assert plan_policies(off, _matching(compress=None, keep=None)) == []
    # 24 hours and 1 day are the same interval, whatever the catalog prints
    current = _matching()
    for c in current.values():
        c.chunk = DAY
    assert plan_policies(settings(), current) == []


def test_fresh_hypertables_get_everything() -> None:
    current = {t: Current(chunk=7 * DAY) for t in HYPERTABLES}
    changes = plan_policies(settings(), current)
    assert {(c.setting, c.old, c.new) for c in changes} == {
        ("chunk_interval", "7 days", "1 day"),
        ("compression", "none", "7 days"),
        ("retention", "none", "400 days"),
    }
    assert len(changes) == 3 * len(HYPERTABLES)
    statements = _sql(changes)
    assert sum(s.startswith("ALTER TABLE") for s in statements) == len(HYPERTABLES)
    assert not any("remove_" in s for s in statements)  # nothing to remove: no job restarts
    alter = next(s for s in statements if s.startswith('ALTER TABLE "case_events"'))
    assert "compress_segmentby = ''" in alter and "ts DESC, case_id, event" in alter


def test_one_changed_setting_changes_one_policy_per_table() -> None:
    changes = plan_policies(settings(retention_days=30), _matching())
    assert {(c.setting, c.old, c.new) for c in changes} == {("retention", "400 days", "30 days")}
    assert _sql(changes) == [
        "SELECT remove_retention_policy(%s, if_exists => true)",
        "SELECT add_retention_policy(%s, %s::interval)",
    ] * len(HYPERTABLES)
    params = [p for c in changes for _, p in c.statements]
    assert ("gps_fixes", timedelta(days=30)) in params


def test_switched_off_policies_are_removed_and_odd_jobs_replaced() -> None:
    changes = plan_policies(settings(compress_after_days=None), _matching())
    assert {c.setting for c in changes} == {"compression"}
    assert set(_sql(changes)) == {"SELECT remove_compression_policy(%s, if_exists => true)"}

    current = _matching()
    current["gps_fixes"].compress_after = [7 * DAY, 7 * DAY]  # two jobs for one table
    current["snapshots"].drop_after = [None]  # a job without drop_after (integer, or other)
    changes = plan_policies(settings(), current)
    assert {(c.table, c.setting) for c in changes} == {
        ("gps_fixes", "compression"),
        ("snapshots", "retention"),
    }
    assert "ALTER TABLE" not in " ".join(_sql(changes))  # compression already enabled


def test_a_table_missing_from_the_catalog_is_planned_in_full() -> None:
    current = _matching()
    del current["observations"]
    changes = plan_policies(settings(), current)
    assert {c.table for c in changes} == {"observations"}
    assert len(changes) == 3


# -- late data and the continuous aggregates -------------------------------------------------

NOW = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)


def _at(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def test_batches_inside_every_window_need_no_refresh() -> None:
    spans = {
        "geomag_states": (_at(days=6), NOW),
        "gps_fixes": (_at(days=30), NOW),
        "case_events": (_at(days=1), NOW),
        "snapshots": (_at(days=300), NOW),  # no aggregate over it
    }
    assert late_ranges(spans, NOW) == []


def test_a_backlog_eight_days_old_refreshes_occupancy_up_to_its_window() -> None:
    oldest, newest = _at(days=8, minutes=10), _at(days=2)
    ranges = late_ranges({"geomag_states": (oldest, newest)}, NOW)
    # whole hours, from the bucket of the oldest row to where the 7-day window (less the
    # margin for the policy's schedule) takes over
    edge = NOW - timedelta(days=7) + MARGIN
    assert ranges == [
        (
            "occupancy_hourly",
            datetime(2026, 11, 24, 3, 0, tzinfo=UTC),
            edge.replace(minute=0) + timedelta(hours=1),
        )
    ]


def test_daily_aggregates_are_refreshed_by_whole_utc_days() -> None:
    spans = {
        "gps_fixes": (_at(days=40), _at(days=39)),
        "case_events": (_at(days=36), _at(days=36)),
    }
    assert late_ranges(spans, NOW) == [
        (
            "violations_daily",
            datetime(2026, 10, 27, tzinfo=UTC),
            datetime(2026, 10, 28, tzinfo=UTC),
        ),
        (
            "vehicle_distance_daily",
            datetime(2026, 10, 23, tzinfo=UTC),
            datetime(2026, 10, 24, 0, tzinfo=UTC) + DAY,
        ),
    ]


def test_rows_just_inside_the_window_are_refreshed_too() -> None:
    """The policy runs every 30 minutes: a row 10 minutes inside the 7-day window now is
    outside it when the policy next runs."""
    inside = _at(days=7) + timedelta(minutes=10)
    [(name, start, end)] = late_ranges({"geomag_states": (inside, inside)}, NOW)
    assert name == "occupancy_hourly"
    assert start <= inside < end and end - start == timedelta(hours=1)
    assert {a.name for a in AGGREGATES} == {
        "metrics_hourly",
        "occupancy_hourly",
        "violations_daily",
        "vehicle_distance_daily",
    }


def test_row_estimates_use_approximate_row_count_on_hypertables() -> None:
    assert "approximate_row_count" in ROW_ESTIMATE[Mode.TIMESCALE]
    assert "reltuples" in ROW_ESTIMATE[Mode.PLAIN]
