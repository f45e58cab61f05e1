"""The shape of the API's refusals, declared in the OpenAPI so generated clients (the case
system's) can read them: `{"detail": "<one-line reason>"}`. 422 stays FastAPI's own field
errors (`detail` is a list); a request that is well-formed but refused gets 400, 404 or 409."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Refusal(BaseModel):
    detail: str


def refusals(**described: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: `refusals(r400="why", r404="why")` → {400: {...}, 404: {...}}."""
    return {
        int(code.removeprefix("r")): {"model": Refusal, "description": text}
        for code, text in described.items()
    }
