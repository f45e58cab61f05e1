"""The local side of the sink: SQLite tables read by `seq`, and batches read and converted
from them (possibly ahead of time, on the prefetch worker)."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streetwatch.sink.records import Reject


class Converter(Protocol):
    SELECT: str

    def key_of(self, row: tuple) -> str: ...

    def convert(self, row: tuple) -> tuple[str, tuple]: ...

    def select(self, tables: set[str]) -> str: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


Item = tuple[int, str, tuple]
"""(seq, table, row)"""


@dataclass
class Refused:
    seq: int
    reason: str
    detail: str
    record: str


@dataclass
class Batch:
    """A batch read and converted, ready to ship (possibly ahead of time, on the worker)."""

    rows: list[tuple]
    items: list[Item]
    refused: list[Refused]
    state_after: Any


@dataclass
class Source:
    """One local SQLite table read by seq; `cursor` mirrors the database's after each commit."""

    name: str
    path: Path
    table: str
    converter: Converter
    cursor: int = 0
    committed_state: Any = None
    """The converter's state right after the last committed batch (restored on a replay)."""
    prefetch: tuple[int, Future[Batch]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _db: sqlite3.Connection | None = field(default=None, repr=False)
    _select: str | None = field(default=None, repr=False)

    def _open(self) -> sqlite3.Connection | None:
        """The file's connection once the file and the table exist (the case store may come
        later than the sink)."""
        if self._select is not None:
            return self._db
        if self._db is None:
            if not self.path.exists():
                return None
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA query_only=1")
            self._db = db
        tables = {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if self.table not in tables:
            return None
        self._select = self.converter.select(tables)
        return self._db

    def fetch(self, after: int, limit: int) -> list[tuple]:
        with self.lock:
            db = self._open()
            if db is None or self._select is None:
                return []
            return db.execute(self._select, (after, limit)).fetchall()

    def max_seq(self) -> int:
        with self.lock:
            db = self._open()
            if db is None:
                return 0
            return db.execute(f"SELECT coalesce(max(seq), 0) FROM {self.table}").fetchone()[0]

    def key_at(self, seq: int) -> str | None:
        rows = self.fetch(seq - 1, 1)
        return self.converter.key_of(rows[0]) if rows and rows[0][0] == seq else None

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
                self._select = None

    def prepare(self, after: int, limit: int) -> Batch:
        """Read and convert the records after `after`; the ones that cannot be stored are
        refused with a reason instead of stopping the batch."""
        rows = self.fetch(after, limit)
        convert = self.converter.convert
        items: list[Item] = []
        refused: list[Refused] = []
        for row in rows:
            try:
                table, out = convert(row)
            except Reject as exc:
                refused.append(Refused(row[0], exc.reason, exc.detail, repr(row[1:])))
                continue
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                refused.append(Refused(row[0], "bad_record", why, repr(row[1:])))
                continue
            items.append((row[0], table, out))
        return Batch(rows, items, refused, self.converter.snapshot())

    def rewind(self) -> None:
        """Forget batches converted but not committed: the converter goes back to its state
        after the last commit (vehicles' last fixes), so a re-read batch converts the same."""
        if self.prefetch is not None:
            self.prefetch[1].result()
            self.prefetch = None
        self.converter.restore(self.committed_state)
