"""Binary COPY of a batch into its tables: straight in, or through a staging table with
`ON CONFLICT DO NOTHING` when rows are already there (a replay, another box).

One exception to "already there means nothing to do": the journal merges the two halves of an
NMEA fix sent one sentence per message (an RMC and a GGA of one instant) into one reading that
moves to a new seq. When the first half was shipped before the second came, the merged reading
arrives with the same (key, ts) and must complete the stored row, so `gps_fixes` takes a
conflicting row's values where they differ (an identical replay still writes nothing)."""

from __future__ import annotations

from collections import defaultdict

import psycopg
from psycopg import sql

from streetwatch.sink.records import TABLES
from streetwatch.sink.refresh import Span, merge_spans
from streetwatch.sink.source import Item
from streetwatch.sink.stats import SinkStats


def _copy_rows(cur: psycopg.Cursor, statement: sql.Composed, types: list[str], rows: list) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)


MERGED_COLUMNS: dict[str, tuple[str, ...]] = {
    "gps_fixes": ("lat", "lon", "speed_kmh", "heading", "hdop", "sats", "valid", "source"),
}
"""Per table, the columns a later version of a row (same key and ts) may complete."""


def _on_conflict(table: str) -> sql.Composable:
    merged = MERGED_COLUMNS.get(table)
    if not merged:
        return sql.SQL("ON CONFLICT DO NOTHING")
    target = sql.Identifier(table)
    columns = [sql.Identifier(c) for c in merged]
    return sql.SQL(
        "ON CONFLICT (key, ts) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})"
    ).format(
        sql.SQL(", ").join(sql.SQL("{} = excluded.{}").format(c, c) for c in columns),
        sql.SQL(", ").join(sql.SQL("{}.{}").format(target, c) for c in columns),
        sql.SQL(", ").join(sql.SQL("excluded.{}").format(c) for c in columns),
    )


def _staging_sql(table: str) -> tuple[str, sql.Composed, sql.Composed, sql.Composed]:
    """(create the staging table, COPY into it, INSERT from it, COPY straight into the table)"""
    cols = TABLES[table]
    stage = sql.Identifier(f"stage_{table}")
    create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        stage,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.stage_type)) for c in cols
        ),
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage, sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
    )
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c.name) for c in cols),
        sql.SQL(", ").join(sql.SQL(c.expr) if c.expr else sql.Identifier(c.name) for c in cols),
        stage,
        _on_conflict(table),
    )
    direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
    )
    return create.as_string(None), copy, insert, direct


class Copier:
    """COPY each table's rows straight into it, inside a savepoint. A unique violation means
    some rows are already there: the savepoint is rolled back and the rows go through the
    staging table and `ON CONFLICT DO NOTHING` instead, which stays the way for that table
    until a batch comes through with no duplicate."""

    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats
        self.sql = {table: _staging_sql(table) for table in TABLES}
        self.types = {table: [c.stage_type for c in cols] for table, cols in TABLES.items()}
        self.careful: set[str] = set()

    def create_staging(self, conn: psycopg.Connection) -> None:
        for create, *_ in self.sql.values():
            conn.execute(create)  # type: ignore[arg-type]

    def copy(
        self, conn: psycopg.Connection, items: list[Item]
    ) -> tuple[dict[str, tuple[int, int]], dict[str, Span]]:
        """Per table (rows staged, rows inserted), and the time span of the rows copied."""
        by_table: dict[str, list[tuple]] = defaultdict(list)
        for _, table, row in items:
            by_table[table].append(row)
        result = {}
        spans: dict[str, Span] = {}
        with conn.cursor() as cur:
            for table, rows in by_table.items():
                merge_spans(spans, table, rows)
                _, stage_sql, insert_sql, direct_sql = self.sql[table]
                types = self.types[table]
                if table not in self.careful:
                    try:
                        with conn.transaction():
                            _copy_rows(cur, direct_sql, types, rows)
                        result[table] = (len(rows), len(rows))
                        continue
                    except psycopg.errors.UniqueViolation:
                        self.careful.add(table)
                        self.stats.inc("replayed_batches")
                _copy_rows(cur, stage_sql, types, rows)
                cur.execute(insert_sql)
                result[table] = (len(rows), cur.rowcount)
                if cur.rowcount == len(rows):
                    self.careful.discard(table)
        return result, spans
