"""The zones page of the console and its JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from streetwatch.console.templating import page

router = APIRouter()


@router.get("/zones", include_in_schema=False)
def zones_page(request: Request) -> HTMLResponse:
    return page(request, "zones.html", "zones")
