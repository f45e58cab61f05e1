"""Schemathesis against the console's JSON API as described at /api/openapi.json, over real HTTP:
no operation answers 5xx, and what it answers matches the schema it declares for that status.

Bounded and deterministic: a few examples per operation, derandomized, no example database.
Three passes: an admin machine token against a console with a real case store and copies of the
demo site and rules it may change (every method); the same with no credentials (every operation
answers 401); and the real `streetwatch run` of the browser tests (reads as an admin, changes as
a viewer, so the shared run keeps the state its other tests expect)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from streetwatch.console import ConsoleServer
from streetwatch.console.tokens import TokenStore, tokens_path
from streetwatch.users import UserError
from tests.browserkit import ConsoleRun
from tests.streetwatch.console.test_security import bearer, no_pipeline, serve

EXAMPLES = 25
SAFE = {"GET", "HEAD", "OPTIONS"}


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleServer]:
    server = serve(tmp_path / "console")
    try:
        yield server
    finally:
        server.stop()


def load(base: str, headers: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json", headers=headers, timeout=30)


def fuzz(
    schema: Any,
    base: str,
    headers: dict[str, str],
    *,
    methods: set[str] | None = None,
    examples: int = EXAMPLES,
    expect: int | None = None,
    server_error_ok: Callable[[int, bytes], bool] | None = None,
) -> dict[str, int]:
    """Every operation (of `methods`) with `examples` generated requests; returns how many
    requests each got. `expect`: the one status every answer must have. Fails listing every
    operation that failed, with the first failing request of each."""
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if methods is not None and operation.method.upper() not in methods:
            continue
        calls[label] = 0

        def answer(response: Any, case: Any) -> None:
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            body = response.content
            if expect is not None:
                assert response.status_code == expect, f"{where}: {body[:300]!r}"
                return
            if response.status_code >= 500 and not (
                server_error_ok and server_error_ok(response.status_code, body)
            ):
                raise AssertionError(f"{where}: {body[:500]!r}")
            case.validate_response(
                response, checks=[response_schema_conformance, content_type_conformance]
            )

        try:
            examples_of(operation, examples, base, headers, answer, calls, label)()
        except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
            failures[label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert calls, "the schema has no operations"
    assert not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())
    return calls


def examples_of(
    operation: Any,
    examples: int,
    base: str,
    headers: dict[str, str],
    answer: Callable[[Any, Any], None],
    calls: dict[str, int],
    label: str,
) -> Callable[[], None]:
    """A Hypothesis test sending `examples` generated requests of `operation`."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def one(case: Any) -> None:
        calls[label] += 1
        answer(case.call(base_url=base, headers=headers, timeout=30), case)

    return one


def test_fuzz_as_admin_against_a_console_with_cases(console: ConsoleServer) -> None:
    headers = bearer(console, "admin")
    schema = load(console.url, headers)

    def pipeline_routes_without_pipeline(status: int, body: bytes) -> bool:
        return no_pipeline(console, status, body)

    calls = fuzz(schema, console.url, headers, server_error_ok=pipeline_routes_without_pipeline)
    assert "GET /api/v1/me" in calls and "GET /api/v1/cases" in calls
    assert all(n >= 1 for n in calls.values()), calls


def test_fuzz_without_credentials_every_operation_answers_401(console: ConsoleServer) -> None:
    schema = load(console.url, bearer(console, "viewer"))
    public = {"GET /healthz"}

    calls = fuzz(schema.exclude(path="/healthz"), console.url, {}, examples=5, expect=401)
    assert calls and not public & set(calls)


def run_token(run: ConsoleRun, name: str, role: str) -> dict[str, str]:
    """A machine token in the run's own tokens file (it reads the file on every request)."""
    doc_users = run.config.parent / "users.yaml"
    tokens = TokenStore(tokens_path(doc_users))
    with contextlib.suppress(UserError):
        tokens.remove(name)
    _, token = tokens.add(name, role)
    return {"Authorization": f"Bearer {token}"}


def test_fuzz_against_the_running_pipeline(console_run: ConsoleRun) -> None:
    admin = run_token(console_run, "fuzz-admin", "admin")
    viewer = run_token(console_run, "fuzz-viewer", "viewer")
    schema = load(console_run.url, admin)
    reads = fuzz(schema, console_run.url, admin, methods=SAFE)
    changes = fuzz(schema, console_run.url, viewer, methods={"POST", "PUT", "PATCH", "DELETE"})
    assert "GET /api/v1/cameras" in reads
    assert reads and changes
    assert console_run.proc.poll() is None, console_run.log_text()[-3000:]
