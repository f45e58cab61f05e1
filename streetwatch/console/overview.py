"""The overview page of the console and its JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from streetwatch.console.templating import page

router = APIRouter()


@router.get("/", include_in_schema=False)
def overview_page(request: Request) -> HTMLResponse:
    return page(request, "overview.html", "overview")
