"""Fixtures of the console tests: a real `streetwatch run` serving the console, and a real
headless Chromium (see tests/browserkit.py)."""

from tests.browserkit import browser, chrome_paths, console_run

__all__ = ["browser", "chrome_paths", "console_run"]
