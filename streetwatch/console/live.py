"""The live page of the console and its JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from streetwatch.console.templating import page

router = APIRouter()


@router.get("/live", include_in_schema=False)
def live_page(request: Request) -> HTMLResponse:
    return page(request, "live.html", "live")
