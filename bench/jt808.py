"""JT/T 808 ingestion: terminals × location reports per second over loopback into the journal.

A client process (asyncio, pre-built frames) plays `--terminals` terminals, each registering,
authenticating, then sending 0x0704 batch uploads of `--per-batch` reports, the next one once
the platform acknowledged the last (0x8001 comes only after the journal commit). The figure is
reports journaled per second, from the first batch sent to the last ack. Beside it, in the same
run: the bare journal write path (the same readings, pre-decoded, written in batches of the
same size straight into a fresh journal), and the ratio.

    .venv/bin/python bench/jt808.py [--terminals 50] [--batches 100] [--per-batch 20] [--rounds 2]

Last line: `jt808_reports_per_s: N`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHONE0 = 13900000000


def site(root: Path, terminals: int) -> Path:
    import yaml

    devices = [
        {"id": f"truck-{i}", "kind": "gps", "protocol": "jt808", "phone": str(PHONE0 + i)}
        for i in range(terminals)
    ]
    doc = {
        "site": {"id": "bench"},
        "storage": {"root": str(root / "var")},
        "jt808": {"host": "127.0.0.1", "port": 0, "max_connections_per_ip": terminals + 10},
        "devices": devices,
    }
    path = root / "devices.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def bodies(terminal: int, batches: int, per_batch: int) -> list[list[bytes]]:
    """Unique location bodies (time and position vary), as a real truck sends them."""
    from ingest.jt808.location import encode_location
    from streetwatch.scenario_jt808 import location

    t0 = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for b in range(batches):
        batch = []
        for r in range(per_batch):
            n = b * per_batch + r
            loc = location(
                31.19 + terminal * 1e-4 + n * 1e-6,
                121.43 + n * 1e-6,
                t0 + timedelta(seconds=n),
                speed_kmh=30.5,
                heading=n % 360,
                mileage_km=1000 + n / 100,
                sats=18,
                signal=25,
                io=n & 1,
            )
            batch.append(encode_location(loc))
        out.append(batch)
    return out


async def _terminal(
    port: int, phone: str, frames: list[bytes], started: asyncio.Event, window: int
) -> None:
    """Log in, then upload: up to `window` batches unacknowledged at a time (a terminal
    emptying its blind-area store does not wait for each answer)."""
    from ingest.jt808.framing import FrameSplitter, unwrap
    from ingest.jt808.message import parse
    from streetwatch.scenario_jt808 import Terminal

    term = Terminal("127.0.0.1", port, phone)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    splitter = FrameSplitter(1 << 20)
    inbox: list[bytes] = []

    async def reply() -> bytes:
        while not inbox:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            inbox.extend(parse(unwrap(p)).body for p in splitter.feed(data))  # type: ignore[arg-type]
        return inbox.pop(0)

    writer.write(term.frame(0x0100, b"\0" * 37 + b"x"))
    code = (await reply())[3:]
    writer.write(term.frame(0x0102, bytes((len(code),)) + code + b"\0" * 35))
    assert (await reply())[4] == 0
    await started.wait()
    sent = 0
    for frame in frames[:window]:
        writer.write(frame)
        sent += 1
    for _ in frames:
        assert (await reply())[4] == 0
        if sent < len(frames):
            writer.write(frames[sent])
            sent += 1
    writer.close()


def client(port: int, terminals: int, batches: int, per_batch: int, window: int, queue) -> None:
    try:
        elapsed = _client(port, terminals, batches, per_batch, window)
        queue.put((elapsed, time.process_time()))
    except BaseException as exc:
        queue.put(exc)
        raise


def _client(port: int, terminals: int, batches: int, per_batch: int, window: int) -> float:
    from ingest.jt808.location import join_batch
    from streetwatch.scenario_jt808 import Terminal

    work = []
    for i in range(terminals):
        term = Terminal("127.0.0.1", port, str(PHONE0 + i))
        term.serial = 100  # past the login's serials
        frames = [term.frame(0x0704, join_batch(b)) for b in bodies(i, batches, per_batch)]
        work.append((str(PHONE0 + i), frames))

    async def main() -> float:
        started = asyncio.Event()
        tasks = [asyncio.create_task(_terminal(port, p, f, started, window)) for p, f in work]
        await asyncio.sleep(0.5)  # every terminal logged in
        t0 = time.perf_counter()
        started.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0

    return asyncio.run(main())


def gateway(args: argparse.Namespace) -> tuple[float, int]:
    from ingest.config import load_config
    from ingest.journal import Journal
    from ingest.jt808 import Jt808Listener, load_auth_key

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(site(Path(tmp), args.terminals))
        journal = Journal(config.storage.journal)  # type: ignore[arg-type]
        listener = Jt808Listener(config, journal, auth_key=load_auth_key(config.storage.root))
        listener.start()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(
            target=client,
            args=(listener.port, args.terminals, args.batches, args.per_batch, args.window, queue),
        )
        cpu0 = time.process_time()
        proc.start()
        answer = queue.get(timeout=240)
        if isinstance(answer, BaseException):
            raise SystemExit(f"the terminals' process failed: {answer!r}")
        elapsed, client_cpu = answer
        proc.join(30)
        cpu = time.process_time() - cpu0
        count = journal.count()
        commits = listener.stats.get("commits")
        listener.stop()
        journal.close()
    print(
        f"  gateway: {count} reports in {elapsed:.2f} s over {args.terminals} terminals,"
        f" {commits} commits, CPU: gateway {cpu:.1f} s, terminals {client_cpu:.1f} s"
        f" (with building their frames)",
        flush=True,
    )
    return elapsed, count


def bare(args: argparse.Namespace) -> tuple[float, int]:
    """The journal alone: the same readings, decoded beforehand, in batches the gateway makes."""
    from ingest.config import load_config
    from ingest.journal import Journal
    from ingest.jt808.convert import to_reading
    from ingest.jt808.location import decode_location

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(site(Path(tmp), args.terminals))
        journal = Journal(config.storage.journal)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        batches = []
        for i in range(args.terminals):
            device = config.device(f"truck-{i}")
            for batch in bodies(i, args.batches, args.per_batch):
                batches.append(
                    [to_reading(decode_location(b), b, device, config, now) for b in batch]  # type: ignore[arg-type]
                )
        group = max(1, config.jt808.batch_size // args.per_batch)  # type: ignore[union-attr]
        t0 = time.perf_counter()
        for start in range(0, len(batches), group):
            journal.write([r for b in batches[start : start + group] for r in b])
        elapsed = time.perf_counter() - t0
        count = journal.count()
        journal.close()
    print(f"  bare journal: {count} readings in {elapsed:.2f} s", flush=True)
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--per-batch", type=int, default=20, help="20 fit one 1023-byte body")
    parser.add_argument("--window", type=int, default=4, help="batches in flight per terminal")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"jt808 bench: {args.terminals} terminals x {args.batches} batch uploads x"
        f" {args.per_batch} reports, {os.cpu_count()} CPUs, best of {args.rounds}",
        flush=True,
    )
    best_gw = best_bare = 0.0
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}", flush=True)
        elapsed, count = gateway(args)
        best_gw = max(best_gw, count / elapsed)
        elapsed, count = bare(args)
        best_bare = max(best_bare, count / elapsed)
    print(f"bare journal write path: {best_bare:,.0f} readings/s")
    print(f"gateway (TCP, decode, journal, ack): {best_gw:,.0f} reports/s")
    print(f"ratio_to_bare_journal: {best_gw / best_bare:.2f}")
    print(f"jt808_reports_per_s: {best_gw:.0f}")


if __name__ == "__main__":
    main()
