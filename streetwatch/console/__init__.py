"""The operator console: the HTTP app `streetwatch run` serves (pages, JSON API, /metrics,
/healthz) and its authentication."""

from streetwatch.console.app import create_app
from streetwatch.console.context import ConsoleContext
from streetwatch.console.server import ConsolePortError, ConsoleServer

__all__ = ["ConsoleContext", "ConsolePortError", "ConsoleServer", "create_app"]
