"""WorkerJournals (ingest/journal_merge.py) on real SQLite files: the worker journals' readings,
snapshots, dead letters and decisions reach the main journal once, in order, however often and
in however small steps it reads; an NMEA fix whose parts two workers journaled is one merged
reading; a reader started again continues from its cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.decisions import DecisionMessage
from ingest.decoders.base import fix_key
from ingest.journal import DeadLetter, Journal
from ingest.journal_merge import WorkerJournals
from ingest.readings import GpsFix, Reading, Snapshot, Stream, TimeFlag

NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def reading(key: str, device: str, payload, at: datetime = NOW) -> Reading:
    stream = Stream.SNAPSHOT if isinstance(payload, Snapshot) else Stream.GPS
    return Reading(key, device, stream, at, at, TimeFlag.OK, payload)


def test_worker_journals_reach_the_main_journal_once(tmp_path: Path) -> None:
    workers = [Journal(tmp_path / f"journal-{i}.sqlite") for i in range(2)]
    fixes = [
        [reading(f"w{w}-{i}", f"gps-{w}", GpsFix(31.0 + i * 1e-4, 121.0)) for i in range(7)]
        for w in range(2)
    ]
    fix_at = NOW - timedelta(seconds=1)
    key = fix_key("gps-nmea", fix_at)
    rmc = GpsFix(31.2, 121.4, speed_kmh=10.0, heading=90.0, source="nmea-rmc")
    gga = GpsFix(31.2, 121.4, hdop=0.9, sats=14, source="nmea-gga")
    jpeg = Snapshot(b"\xff\xd8 a jpeg \xff\xd9", 4, 3)
    workers[0].write(
        [*fixes[0][:4], reading(key, "gps-nmea", rmc, fix_at), reading("snap", "cam-1", jpeg)],
        [DeadLetter.of("t/a", b"{", "not_json", "payload is not JSON", NOW, 100)],
        [DecisionMessage("k-1", "case-1", "t/d", {"decision": "accepted"}, NOW)],
    )
    workers[1].write(
        [*fixes[1], reading(key, "gps-nmea", gga, fix_at)],
        [DeadLetter.of("t/b", b"[1]", "wrong_type", "element 0", NOW, 100, key="w1:0")],
    )
    main = Journal(tmp_path / "journal.sqlite")
    reader = WorkerJournals(main, [w.path for w in workers] + [tmp_path / "not-yet.sqlite"])
    while reader.merge_once(limit=3):
        pass
    workers[0].write(fixes[0][4:])  # more after a first full read
    workers[1].write(
        [*fixes[1][:2]],  # a redelivery the worker already has
        [DeadLetter.of("t/b", b"[1]", "wrong_type", "element 0", NOW, 100, key="w1:0")],
    )
    reader.close()
    again = WorkerJournals(main, [w.path for w in workers])  # e.g. after a restart
    while again.merge_once(limit=3):
        pass
    assert not again.merge_once()
    again.close()

    rows = main.readings(limit=100)
    keys = [r.key for _, r in rows]
    assert len(keys) == len(set(keys)) == 7 + 7 + 1 + 1
    assert [k for k in keys if k.startswith("w0")] == [f"w0-{i}" for i in range(7)]
    assert [k for k in keys if k.startswith("w1")] == [f"w1-{i}" for i in range(7)]
    [merged] = [r.payload for _, r in rows if r.key == key]
    assert merged.source == "nmea"
    assert (merged.speed_kmh, merged.hdop, merged.sats) == (10.0, 0.9, 14)
    [snapshot] = [r.payload for _, r in rows if r.key == "snap"]
    assert snapshot.jpeg == jpeg.jpeg
    assert main.dead_letter_counts() == {"not_json": 1, "wrong_type": 1}
    assert [(d["key"], d["case_id"]) for d in main.decisions()] == [("k-1", "case-1")]
    for journal in (*workers, main):
        journal.close()
