"""What the console's pages and API read and change: the site, its users, its case store and,
under `streetwatch run`, the running pipeline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from evidence.cases import CaseStore
from ingest.config import SiteConfig
from streetwatch.console.limiter import LoginLimiter
from streetwatch.console.metrics import StageCollector
from streetwatch.console.sessions import Sessions
from streetwatch.console.tokens import TokenStore, tokens_path
from streetwatch.users import UserStore

Sources = Callable[[], Mapping[str, Mapping[str, float]]]
Health = Callable[[], tuple[bool, Mapping[str, object]]]


def _healthy() -> tuple[bool, Mapping[str, object]]:
    return True, {}


@dataclass
class ConsoleContext:
    """`pipeline`: the running `streetwatch.pipeline.Pipeline` (None when the console only
    serves a case store, as in the case-list benchmark); `sources` and `health` feed /metrics
    and /healthz."""

    config: SiteConfig
    users: UserStore
    tokens: TokenStore
    sessions: Sessions
    cases: CaseStore
    sources: Sources = dict
    health: Health = _healthy
    config_path: Path | None = None
    rules_dir: Path | None = None
    pipeline: Any = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    limiter: LoginLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.registry.register(StageCollector(self.sources))
        self.limiter = LoginLimiter(registry=self.registry)

    @classmethod
    def for_site(cls, config: SiteConfig, cases: CaseStore, **kwargs: Any) -> ConsoleContext:
        """Users, tokens and the session key from the site's `console` section."""
        settings = config.console
        assert settings.users_file is not None, "load_config resolves console.users_file"
        users = UserStore(settings.users_file, min_password_length=settings.min_password_length)
        sessions = Sessions.for_store(users, max_age=int(settings.session_hours * 3600))
        tokens = TokenStore(tokens_path(settings.users_file))
        return cls(config, users, tokens, sessions, cases, **kwargs)

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        *,
        case_id: str | None = None,
    ) -> None:
        """Record an operator's change with the case events (shipped by the sink)."""
        self.cases.audit(actor, action, target, before, after, case_id=case_id)
