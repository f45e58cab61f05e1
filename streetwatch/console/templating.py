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
    ("merchants", "/merchants", "Merchants"),
    ("rules", "/rules", "Rules"),
)
ADMIN_NAV = (("users", "/users", "Users"),)


def duration(seconds: float | None) -> str:
    """Seconds as an operator reads them: `45 s`, `4 min 05 s`, `2 h 03 min`, `3 d 4 h`."""
    if seconds is None:
        return "-"
    s = round(seconds)
    sign, s = ("-", -s) if s < 0 else ("", s)
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{sign}{s // 86400} d {s % 86400 // 3600} h"


templates.env.filters["duration"] = duration


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
