"""Server-rendered pages: Jinja2 templates shipped in the package, every asset served by the box
(no CDN: the box may have no internet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from streetwatch.users import Role

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

NAV = (
    ("overview", "/", "Overview"),
    ("live", "/live", "Live"),
    ("zones", "/zones", "Zones"),
    ("cases", "/cases", "Cases"),
    ("rules", "/rules", "Rules"),
)
ADMIN_NAV = (("users", "/users", "Users"),)


def page(
    request: Request, template: str, active: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page of the console for the logged-in caller, with the navigation and the CSRF token
    its scripts send on every change."""
    ctx = request.app.state.ctx
    who = getattr(request.state, "principal", None)
    csrf = ctx.sessions.csrf_token(who.session) if who is not None and who.session else ""
    return templates.TemplateResponse(
        request,
        template,
        {
            "nav": NAV + (ADMIN_NAV if who is not None and who.allows(Role.ADMIN) else ()),
            "active": active,
            "who": who,
            "csrf": csrf,
            "site": ctx.config.site,
            **context,
        },
        status_code=status_code,
    )
