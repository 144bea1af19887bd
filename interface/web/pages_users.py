"""The console's user administration page, ``/users`` (admin only).

One page lists the users with a form per action: add, change role, disable/enable, reset the
password, issue an API token with its lifetime in days, and each user's tokens (id, dates, state)
with a button to revoke each one (a new token is shown once, on the page the POST answers; it never
goes into a URL). Each form posts the session's CSRF token and the user's name as fields (a name
in a path could hold a ``/``). The changes are :mod:`interface.web.api.users`' (so
:mod:`interface.desk.users`' functions, their audit rows, the last-admin rule and the error codes):
a change that cannot be done shows the page again with the message and its status (404, 409, 422).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from interface.desk import users as usermod
from interface.desk.users import User
from interface.web.api import users as api_users
from interface.web.pages import _engine, _render, html_errors

router = APIRouter(include_in_schema=False)

ADMIN = api_users.ADMIN
NOTICES = {
    "add": "User added",
    "role": "Role changed",
    "disable": "User disabled (sessions ended, tokens revoked)",
    "enable": "User enabled",
    "password": "Password set; the user's sessions ended and API tokens revoked",
    "revoke": "API token revoked",
}


def _page(
    request: Request,
    *,
    notice: str | None = None,
    error: str | None = None,
    token: dict | None = None,
    status_code: int = 200,
    form: dict | None = None,
) -> HTMLResponse:
    now = api_users.clock(request)
    with _engine(request).connect() as conn:
        rows = usermod.list_users(conn)
        tokens = {r["name"]: usermod.list_tokens(conn, r["name"], now) for r in rows}
    form = form or {}
    return _render(
        request,
        "users.html",
        {
            "rows": rows,
            "tokens": tokens,
            "roles": usermod.ROLES,
            "notice": notice,
            "error": error,
            "token": token,
            "token_days": usermod.TOKEN_DAYS,
            "max_token_days": usermod.MAX_TOKEN_DAYS,
            "form_name": form.get("name"),
            "form_role": form.get("role", "clerk"),
        },
        status_code=status_code,
    )


@router.get("/users", response_class=HTMLResponse)
@html_errors
def users_page(
    request: Request, user: User = Depends(ADMIN), done: str | None = None, who: str | None = None
):
    notice = NOTICES.get(done or "")
    if notice and who:
        with _engine(request).connect() as conn:  # a name from the URL is shown only if it is a user's
            if any(r["name"] == who for r in usermod.list_users(conn)):
                notice = f"{notice}: {who}"
    return _page(request, notice=notice)


def _run(request: Request, name: str, fn, form: dict | None = None, password: str | None = None):
    """Run one change through :func:`interface.web.api.users.user_change` (``password``: checked and
    hashed before its transaction, handed to ``fn(conn, prepared)``): ``(what fn returned,
    None)``, or ``(None, the list again with the error and its status)``."""
    if "\x00" in name:
        return None, _page(
            request, error="a user name cannot contain NUL characters", status_code=422, form=form
        )
    try:
        return api_users.user_change(request, fn, name, password=password)[0], None
    except HTTPException as exc:
        return None, _page(request, error=str(exc.detail), status_code=exc.status_code, form=form)


def _change(
    request: Request, action: str, name: str, fn, form: dict | None = None, password: str | None = None
):
    """One change; back to the list with a notice, or the list again with the error."""
    _, failed = _run(request, name, fn, form, password)
    return failed or RedirectResponse(f"/users?{urlencode({'done': action, 'who': name})}", status_code=303)


_by = api_users.actor


@router.post("/users/add")
@html_errors
def users_add(
    request: Request,
    user: User = Depends(ADMIN),
    name: str = Form(""),
    role: str = Form(""),
    password: str = Form(""),
):
    name = name.strip()[:200]
    return _change(
        request,
        "add",
        name,
        lambda conn, pw: usermod.add_user(conn, name, role, pw, **_by(request, user)),
        form={"name": name, "role": role},
        password=password[:1024],
    )


@router.post("/users/role")
@html_errors
def users_role(request: Request, user: User = Depends(ADMIN), name: str = Form(""), role: str = Form("")):
    return _change(
        request,
        "role",
        name,
        lambda conn: usermod.set_role(conn, name, role, keep_an_admin=True, **_by(request, user)),
    )


@router.post("/users/disable")
@html_errors
def users_disable(request: Request, user: User = Depends(ADMIN), name: str = Form("")):
    return _change(
        request,
        "disable",
        name,
        lambda conn: usermod.set_disabled(conn, name, True, keep_an_admin=True, **_by(request, user)),
    )


@router.post("/users/enable")
@html_errors
def users_enable(request: Request, user: User = Depends(ADMIN), name: str = Form("")):
    return _change(
        request, "enable", name, lambda conn: usermod.set_disabled(conn, name, False, **_by(request, user))
    )


@router.post("/users/password")
@html_errors
def users_password(
    request: Request, user: User = Depends(ADMIN), name: str = Form(""), password: str = Form("")
):
    return _change(
        request,
        "password",
        name,
        lambda conn, pw: usermod.set_password(conn, name, pw, **_by(request, user)),
        password=password[:1024],
    )


@router.post("/users/token", response_class=HTMLResponse)
@html_errors
def users_token(
    request: Request,
    user: User = Depends(ADMIN),
    name: str = Form(""),
    expires_days: str = Form(str(usermod.TOKEN_DAYS)),
):
    """The new token is in this answer only (no redirect: it must not land in a URL or history)."""
    try:
        days = int(expires_days.strip())
    except ValueError:
        return _page(request, error="a token's lifetime is a whole number of days", status_code=422)
    token, failed = _run(
        request, name, lambda conn: usermod.new_token(conn, name, expires_days=days, **_by(request, user))
    )
    if failed:
        return failed
    return _page(
        request, notice=f"API token issued for {name} ({days} days)", token={"name": name, "value": token}
    )


@router.post("/users/revoke-token")
@html_errors
def users_revoke_token(
    request: Request, user: User = Depends(ADMIN), name: str = Form(""), token_id: str = Form("")
):
    if not token_id.strip().isdigit() or not 1 <= int(token_id) <= 2**63 - 1:
        return _page(request, error="no such API token", status_code=404)
    return _change(
        request,
        "revoke",
        name,
        lambda conn: usermod.revoke_token(conn, int(token_id), name=name, **_by(request, user)),
    )
