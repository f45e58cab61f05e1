"""The Users page (admins only): who may log in, with which role; add, change role by
re-adding, reset a password, remove. Every change is an audit event. The same file
`streetwatch users` edits on the command line."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from streetwatch.console.errors import refusals
from streetwatch.console.security import Principal, require
from streetwatch.console.templating import page
from streetwatch.users import MAX_PASSWORD_LENGTH, SAFE_ID, Role, User, UserError

router = APIRouter()
UserName = Annotated[str, Path(pattern=SAFE_ID, max_length=64)]


class UserOut(BaseModel):
    name: str
    role: Role
    created: str
    password_changed: str


class NewUser(BaseModel):
    name: str = Field(pattern=SAFE_ID, max_length=64)
    role: Role
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)


class NewPassword(BaseModel):
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)


def _out(user: User) -> UserOut:
    return UserOut(
        name=user.name,
        role=user.role,
        created=user.created.isoformat(),
        password_changed=user.password_changed.isoformat(),
    )


@router.get("/users", include_in_schema=False)
def users_page(
    request: Request, who: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> HTMLResponse:
    return page(request, "users.html", "users")


@router.get("/api/v1/users", tags=["users"])
def list_users(
    request: Request, who: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> list[UserOut]:
    """Every console user (no hashes)."""
    return [_out(u) for u in request.app.state.ctx.users.users()]


@router.post(
    "/api/v1/users",
    tags=["users"],
    status_code=201,
    responses=refusals(r400="a taken name or a password the site does not accept"),
)
async def add_user(
    request: Request, body: NewUser, who: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> UserOut:
    """A new user; 400 with the reason for a taken name or a too-short password."""
    ctx = request.app.state.ctx
    try:
        user = await run_in_threadpool(ctx.users.add, body.name, body.role, body.password)
    except UserError as exc:
        raise HTTPException(400, str(exc)) from None
    ctx.audit(who.name, "users.add", f"users/{user.name}", None, {"role": user.role.value})
    return _out(user)


@router.put(
    "/api/v1/users/{name}/password",
    tags=["users"],
    responses=refusals(r400="a password the site does not accept", r404="no such user"),
)
async def reset_password(
    request: Request,
    name: UserName,
    body: NewPassword,
    who: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> UserOut:
    """A new password; the user's sessions end."""
    ctx = request.app.state.ctx
    try:
        user = await run_in_threadpool(ctx.users.set_password, name, body.password)
    except UserError as exc:
        raise HTTPException(404 if "no user" in str(exc) else 400, str(exc)) from None
    ctx.audit(who.name, "users.password", f"users/{name}", None, None)
    return _out(user)


@router.delete(
    "/api/v1/users/{name}",
    tags=["users"],
    status_code=204,
    responses=refusals(r404="no such user", r409="an admin removing themself"),
)
def remove_user(
    request: Request, name: UserName, who: Annotated[Principal, Depends(require(Role.ADMIN))]
) -> None:
    """Remove a user; their sessions end. An admin cannot remove themself (no lock-out)."""
    ctx = request.app.state.ctx
    if name == who.name:
        raise HTTPException(409, "you cannot remove yourself: ask another admin")
    before = ctx.users.get(name)
    try:
        ctx.users.remove(name)
    except UserError as exc:
        raise HTTPException(404, str(exc)) from None
    ctx.audit(who.name, "users.remove", f"users/{name}", {"role": before.role.value}, None)
