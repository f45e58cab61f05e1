"""Deleting the journal's oldest rows once nothing needs them.

The journal is the box's buffer, not its archive: TimescaleDB keeps the readings, the evidence
packages keep what each case needs. Rows go oldest first, as a *prefix* by sequence number: a
pass reads the first `limit` rows and deletes them up to the first one that must stay (too
recent, not yet analysed or shipped), so it never scans the table and never leaves a hole that
a reader by sequence number could trip over. Receipt times follow sequence numbers closely (a
worker journal's rows merged late are the exception); such a row only holds back the rows
after it until it is old enough itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(slots=True)
class Pruned:
    readings: int = 0
    snapshots: int = 0
    observations: int = 0
    dead_letters: int = 0

    def __bool__(self) -> bool:
        return bool(self.readings or self.snapshots or self.observations or self.dead_letters)

    def add(self, other: Pruned) -> None:
        self.readings += other.readings
        self.snapshots += other.snapshots
        self.observations += other.observations
        self.dead_letters += other.dead_letters


def _prefix(
    db: sqlite3.Connection,
    table: str,
    id_col: str,
    ts_col: str,
    before: float,
    upto: int | None,
    limit: int,
    extra: str = "",
) -> list[tuple]:
    """The table's oldest rows by `id_col`, up to the first with `ts_col` at or after `before`
    (or an id past `upto`), deleted; returns them (id, ts, extra columns...)."""
    bound = "" if upto is None else f" WHERE {id_col} <= {int(upto)}"
    rows = db.execute(
        f"SELECT {id_col}, {ts_col}{extra} FROM {table}{bound} ORDER BY {id_col} LIMIT ?",
        (limit,),
    ).fetchall()
    prefix: list[tuple] = []
    for row in rows:
        if row[1] is None or row[1] >= before:
            break
        prefix.append(row)
    if prefix:
        db.execute(f"DELETE FROM {table} WHERE {id_col} <= ?", (prefix[-1][0],))
    return prefix


def prune_rows(
    db: sqlite3.Connection,
    before: float,
    *,
    readings_upto: int | None,
    observations_upto: int | None,
    dead_letters_upto: int | None = None,
    limit: int = 5000,
) -> Pruned:
    """One pass of at most `limit` rows a table, in the caller's transaction. `before`: epoch
    seconds (receipt time of readings and dead letters, event time of observations);
    `*_upto`: the highest sequence number that may go (None: no bound; 0 keeps the table
    whole). The case system's decisions stay: they are few, and their keys turn a late
    redelivery away."""
    out = Pruned()
    if readings_upto is None or readings_upto > 0:
        rows = _prefix(
            db, "readings", "seq", "received_ts", before, readings_upto, limit, ", kind, key"
        )
        out.readings = len(rows)
        keys = [row[3] for row in rows if row[2] == "snapshot"]
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.snapshots += db.execute(
                f"DELETE FROM snapshots WHERE key IN ({marks})", chunk
            ).rowcount
    if observations_upto is None or observations_upto > 0:
        out.observations = len(
            _prefix(db, "observations", "seq", "last_seen", before, observations_upto, limit)
        )
    if dead_letters_upto is None or dead_letters_upto > 0:
        out.dead_letters = len(
            _prefix(db, "dead_letters", "id", "received_ts", before, dead_letters_upto, limit)
        )
    return out
