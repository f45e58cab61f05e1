"""The console on a real uvicorn server in the test process, for tests about its HTTP side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evidence.cases import CaseStore
from ingest.config import SiteConfig
from streetwatch.console import ConsoleContext, ConsoleServer, create_app


def console_context(config: SiteConfig, folder: Path, **kwargs: Any) -> ConsoleContext:
    """A context with users, tokens and cases in `folder` (not the site's storage root)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = config.console.model_copy(update={"users_file": folder / "users.yaml"})
    config = config.model_copy(update={"console": settings})
    cases = kwargs.pop("cases", None) or CaseStore(folder / "cases.sqlite")
    return ConsoleContext.for_site(config, cases, **kwargs)


def serve_console(config: SiteConfig, folder: Path, **kwargs: Any) -> ConsoleServer:
    """A started console on a free loopback port; `stop()` it when done."""
    ctx = console_context(config, folder, **kwargs)
    server = ConsoleServer(create_app(ctx), port=0).start()
    server.ctx = ctx  # type: ignore[attr-defined]
    return server
