"""Journal.prune (ingest/journal_prune.py) on a real SQLite journal: the oldest rows go first,
only up to the bounds its readers set (analysed, shipped) and the time; a recent row holds back
the rows after it; a snapshot's JPEG goes with its reading; each pass is at most a batch; and a
worker journal loses only what the main journal holds already."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from detectors.observation import Observation, ObservationKind
from ingest.journal import DeadLetter, Journal
from ingest.journal_merge import WorkerJournals
from ingest.readings import GpsFix, Reading, Snapshot, Stream, TimeFlag

OLD = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
CUT = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
NEW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def reading(key: str, at: datetime, payload: object = None) -> Reading:
    if isinstance(payload, Snapshot):
        return Reading(key, "cam-1", Stream.SNAPSHOT, None, at, TimeFlag.MISSING, payload)
    return Reading(key, "gps-1", Stream.GPS, at, at, TimeFlag.OK, GpsFix(31.2, 121.4))


def old(n: int, prefix: str = "old") -> list[Reading]:
    return [reading(f"{prefix}-{i}", OLD + timedelta(seconds=i)) for i in range(n)]


def keys(journal: Journal) -> list[str]:
    return [r.key for _, r in journal.readings(limit=1000)]


def top(journal: Journal) -> int:
    return journal.readings(limit=1000)[-1][0]


def test_old_rows_go_oldest_first_and_recent_ones_stay(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write([*old(10), reading("new-0", NEW), reading("new-1", NEW)])
    pruned = journal.prune(CUT, readings_upto=top(journal), observations_upto=None)
    assert pruned.readings == 10
    assert keys(journal) == ["new-0", "new-1"]
    assert not journal.prune(CUT, readings_upto=top(journal), observations_upto=None)
    journal.write([reading("old-3", OLD)])  # its key is free again: a row stored anew
    assert keys(journal) == ["new-0", "new-1", "old-3"]


def test_rows_past_the_bound_stay_and_a_zero_bound_keeps_everything(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write(old(10))
    fourth = journal.readings(limit=4)[-1][0]
    assert journal.prune(CUT, readings_upto=0, observations_upto=None).readings == 0
    assert journal.prune(CUT, readings_upto=fourth, observations_upto=None).readings == 4
    assert keys(journal) == [f"old-{i}" for i in range(4, 10)]


def test_a_recent_row_holds_back_the_old_rows_after_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write([*old(2, "a"), reading("late-merged-new", NEW), *old(2, "b")])
    assert journal.prune(CUT, readings_upto=top(journal), observations_upto=None).readings == 2
    assert keys(journal) == ["late-merged-new", "b-0", "b-1"]


def test_a_pass_is_one_batch(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write(old(12))
    assert journal.prune(CUT, readings_upto=None, observations_upto=None, limit=5).readings == 5
    assert len(keys(journal)) == 7


def test_a_snapshots_jpeg_goes_with_its_reading(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    jpeg = Snapshot(b"\xff\xd8 old \xff\xd9", 4, 3)
    journal.write([reading("snap-old", OLD, jpeg), reading("snap-new", NEW, jpeg)])
    pruned = journal.prune(CUT, readings_upto=None, observations_upto=None)
    assert (pruned.readings, pruned.snapshots) == (1, 1)
    [(_, kept)] = journal.readings(limit=10)
    assert kept.key == "snap-new" and kept.payload.jpeg == jpeg.jpeg


def test_dead_letters_by_receipt_and_observations_by_event_time_within_their_bound(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write(
        [],
        [
            DeadLetter.of("t/a", b"{", "not_json", "payload is not JSON", OLD, 100),
            DeadLetter.of("t/a", b"{", "not_json", "payload is not JSON", NEW, 100),
        ],
    )

    def seen(i: int, at: datetime) -> Observation:
        return Observation(
            ObservationKind.PRESENCE, "cam-1", "person", str(i), at, at, zone_id="z-1"
        )

    journal.write_observations([seen(i, OLD + timedelta(seconds=i)) for i in range(3)])
    journal.write_observations([seen(9, NEW)])
    pruned = journal.prune(CUT, readings_upto=None, observations_upto=2)  # shipped up to seq 2
    assert (pruned.dead_letters, pruned.observations) == (1, 2)
    assert [d.received_ts for d in journal.dead_letters()] == [NEW]


def test_a_worker_journal_loses_only_what_the_main_journal_holds(tmp_path: Path) -> None:
    worker = Journal(tmp_path / "journal-0.sqlite")
    worker.write(old(6, "w"), [DeadLetter.of("t/b", b"[", "not_json", "x", OLD, 100)])
    main = Journal(tmp_path / "journal.sqlite")
    reader = WorkerJournals(main, [worker.path])
    assert reader.merge_once(limit=4).readings == 4  # 4 copied, 2 not yet
    pruned = reader.prune(CUT)
    assert (pruned.readings, pruned.dead_letters) == (4, 1)
    assert keys(worker) == ["w-4", "w-5"]
    while reader.merge_once():
        pass
    assert keys(main) == [f"w-{i}" for i in range(6)]  # nothing skipped, nothing twice
    assert reader.prune(CUT).readings == 2
    reader.close()
    for journal in (worker, main):
        journal.close()
