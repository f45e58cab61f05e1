"""Hot reload of rule files: poll the folder, validate, swap; a bad edit keeps the old rules.

Polling (not inotify) because rule folders live on whatever the box mounts and edits are rare;
the check compares file contents, so an editor that rewrites a file within one mtime tick is
still seen. An editor's half-written file simply fails validation once and is picked up on
the next poll when complete.

A poll that does not finish (a hung network mount, a callback that blocks) would end live reload
without a word, so each watcher keeps a heartbeat: a watchdog thread logs a reload that has not
finished a poll for `stuck_after_s`, and `stuck()` says why for /healthz (the pipeline's health).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ingest.config import SiteConfig
from ingest.yamlsource import ConfigError, read_config_bytes
from rules.schema import RuleSet, load_rules, rule_files

log = logging.getLogger("streetwatch.rules")


def _signature(rules_dir: Path) -> str:
    digest = hashlib.sha256()
    try:
        files = rule_files(rules_dir)
    except OSError:
        return "unreadable"
    for path in files:
        digest.update(path.name.encode() + b"\0")
        try:  # never opens a FIFO or a device, never reads past the size limit
            digest.update(read_config_bytes(path))
        except ConfigError as exc:
            digest.update(f"error:{exc.problems[0]}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


class RuleWatcher:
    """Calls `on_rules(RuleSet)` after each valid change of `rules_dir`, `on_error(ConfigError)`
    after an invalid one (its problems are logged too; the caller keeps its current rules)."""

    def __init__(
        self,
        rules_dir: str | Path,
        config: SiteConfig,
        on_rules: Callable[[RuleSet], None],
        on_error: Callable[[ConfigError], None] | None = None,
        *,
        interval_s: float = 2.0,
        stuck_after_s: float | None = None,
    ) -> None:
        """`stuck_after_s`: a poll unfinished this long past its due time is reported as stuck
        (default: 5 intervals, at least 10 s)."""
        self.rules_dir = Path(rules_dir)
        self.config = config
        self.on_rules = on_rules
        self.on_error = on_error
        self.interval_s = interval_s
        self.stuck_after_s = (
            stuck_after_s if stuck_after_s is not None else max(10.0, 5 * interval_s)
        )
        self.last_poll_finished: datetime | None = None
        """Wall-clock time the last poll finished (whatever its outcome)."""
        self._heartbeat = time.monotonic()
        self.stats: Counter[str] = Counter()
        self.last_error: ConfigError | None = None
        self._seen = _signature(self.rules_dir)
        """The files as they were when the caller loaded the running rules."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    def check(self) -> bool:
        """Look once; True when new rules were handed to `on_rules`."""
        signature = _signature(self.rules_dir)
        if signature == self._seen:
            return False
        self._seen = signature
        try:
            rules = load_rules(self.rules_dir, self.config)
        except ConfigError as exc:
            self.stats["reload_rejected"] += 1
            self.last_error = exc
            log.error(
                "rules in %s rejected (%d problem(s)); the previous rules keep running",
                self.rules_dir,
                len(exc.problems),
            )
            for problem in exc.problems:
                log.error("  %s", problem)
            if self.on_error is not None:
                self.on_error(exc)
            return False
        self.stats["reloaded"] += 1
        self.last_error = None
        log.info("rules reloaded from %s: %d rule(s)", self.rules_dir, len(rules))
        self.on_rules(rules)
        return True

    def stuck(self) -> str | None:
        """Why this watcher's reload is not working (None while it finishes its polls)."""
        thread = self._thread
        if thread is None:
            return None
        if not thread.is_alive():
            return f"rule reload of {self.rules_dir} has stopped: its thread ended"
        late = time.monotonic() - self._heartbeat - self.interval_s
        if late <= self.stuck_after_s:
            return None
        finished = self.last_poll_finished
        last = "never" if finished is None else finished.isoformat(timespec="seconds")
        return (
            f"rule reload of {self.rules_dir} stuck: no poll finished for {late:.0f} s past due "
            f"(last finished: {last}); rule edits are not picked up"
        )

    def start(self) -> RuleWatcher:
        self._stop.clear()
        self._heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rule-watcher", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="rule-watchdog", daemon=True)
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout_s)
        self._thread = self._watchdog = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a callback failing must not end hot reload
                self.stats["reload_failed"] += 1
                log.exception("rule reload failed; the previous rules keep running")
            self._heartbeat = time.monotonic()
            self.last_poll_finished = datetime.now(UTC)

    def _watch(self) -> None:
        """Logs a reload that stopped finishing its polls, once, and when it comes back."""
        reported = False
        while not self._stop.wait(min(self.interval_s, self.stuck_after_s / 4)):
            why = self.stuck()
            if why is not None and not reported:
                self.stats["reload_stuck"] += 1
                log.error("%s; the rules loaded last keep running", why)
            elif why is None and reported:
                log.warning("rule reload of %s is polling again", self.rules_dir)
            reported = why is not None
