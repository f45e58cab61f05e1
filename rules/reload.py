"""Hot reload of rule files: poll the folder, validate, swap; a bad edit keeps the old rules.

Polling (not inotify) because rule folders live on whatever the box mounts and edits are rare;
the check compares file contents, so an editor that rewrites a file within one mtime tick is
still seen. An editor's half-written file simply fails validation once and is picked up on
the next poll when complete.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ingest.config import SiteConfig
from ingest.yamlsource import ConfigError
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
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            digest.update(f"error:{exc.errno}".encode())
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
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.config = config
        self.on_rules = on_rules
        self.on_error = on_error
        self.interval_s = interval_s
        self.stats: Counter[str] = Counter()
        self.last_error: ConfigError | None = None
        self._seen = _signature(self.rules_dir)
        """The files as they were when the caller loaded the running rules."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def start(self) -> RuleWatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rule-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a callback failing must not end hot reload
                self.stats["reload_failed"] += 1
                log.exception("rule reload failed; the previous rules keep running")
