"""Console users over HTTP (admin only): list, add, change role, disable/enable, reset a password,
issue, list and revoke API tokens.

The work is :mod:`interface.desk.users`' (shared with ``interface users``): password policy and
hashing, ending sessions, revoking and making tokens, and the ``audit`` row of each change,
stamped with the acting admin (never the password or the token). Here only: the last enabled
admin cannot be disabled or demoted (409), and :class:`~interface.desk.users.UserError` becomes 404
(no such user), 409 (name taken, user disabled, last admin) or 422 (bad name, role, password).
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from interface.desk import users as usermod
from interface.desk.users import User
from interface.web.auth import ERROR_RESPONSES, UtcDateTime, clock, require

router = APIRouter(tags=["users"])

ADMIN = require("admin")
Role = Literal[usermod.ROLES]  # type: ignore[valid-type]  (one list of roles: users.ROLES)
USER_RESPONSES = {
    **ERROR_RESPONSES,
    409: {"description": "name taken, user disabled, or it would leave no enabled admin"},
}
UserName = Annotated[str, Path(min_length=1, max_length=128)]


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


Password = Annotated[
    str,
    Field(
        max_length=1024,
        description="at least 10 characters, not the user name, not easy to guess (zxcvbn score 3 of 4)",
    ),
    AfterValidator(_no_nul),
]


class UserInfo(BaseModel):
    name: str
    role: str
    disabled: bool
    created_at: UtcDateTime
    password_changed_at: UtcDateTime
    last_login_at: UtcDateTime | None = None  # the last console sign-in; None: never
    source: str = "local"  # local (a password here) or directory (signs in against the directory)


class UserList(BaseModel):
    users: list[UserInfo]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
    role: Role
    password: Password


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Password


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_days: int = Field(
        usermod.TOKEN_DAYS, ge=1, le=usermod.MAX_TOKEN_DAYS, description="days the token is valid"
    )


class NewToken(BaseModel):
    name: str
    token: str  # shown once: only its hash is stored
    id: int
    expires_at: UtcDateTime | None = None


class TokenInfo(BaseModel):
    id: int
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = None  # None: made before tokens expired (never expires)
    revoked: bool
    state: Literal["active", "expired", "revoked"]


class TokenList(BaseModel):
    tokens: list[TokenInfo]


def _info(conn, name: str) -> UserInfo:
    row = conn.execute(select(usermod.users).where(usermod.users.c.name == name)).first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no user {name!r}")
    return UserInfo(
        name=row.name,
        role=row.role,
        disabled=row.disabled,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
        last_login_at=row.last_login_at,
        source=row.source,
    )


def user_change(request: Request, fn: Callable, name: str, *, password: str | None = None):
    """Run ``fn(conn)`` (a :mod:`interface.desk.users` change) in one transaction; returns what ``fn``
    returned and the user's state after it. With ``password``: it is checked against the policy
    and hashed first, outside the transaction (hashing takes 100-300 ms, and on SQLite the
    transaction holds the write lock every sender's ACK waits for), and ``fn(conn, prepared)``
    gets the :class:`~interface.desk.users.NewPassword`. UserError -> 404/409/422 with its message."""
    try:
        prepared = usermod.new_password(password, name) if password is not None else None
        with request.app.state.engine.begin() as conn:
            out = fn(conn) if password is None else fn(conn, prepared)
            return out, _info(conn, name)
    except usermod.NoSuchUser as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except usermod.UserConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except usermod.UserError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except IntegrityError:  # another request created the same name between check and insert
        raise HTTPException(status_code=409, detail=f"user {name!r} already exists") from None


def actor(request: Request, user: User) -> dict:
    """Who and when, for :mod:`interface.desk.users`' audit rows (also the ``/users`` page's)."""
    return {"actor": user.name, "now": clock(request)}


@router.get("/api/users", response_model=UserList, responses=ERROR_RESPONSES)
def list_users(request: Request, _user: User = Depends(ADMIN)) -> UserList:
    """Every console user (admin): name, role, disabled, when created, when the password was
    last set and when they last signed in to the console (null: never). Never a password hash
    or a token."""
    with request.app.state.reader.connect() as conn:
        rows = usermod.list_users(conn)
    return UserList(users=[UserInfo(**{k: r[k] for k in UserInfo.model_fields}) for r in rows])


@router.post("/api/users", response_model=UserInfo, status_code=201, responses=USER_RESPONSES)
def add_user(request: Request, body: NewUser, user: User = Depends(ADMIN)) -> UserInfo:
    """Create a user (admin). 409 if the name exists; 422 for a bad name or a short password."""
    name = body.name.strip()
    return user_change(
        request,
        lambda conn, pw: usermod.add_user(conn, body.name, body.role, pw, **actor(request, user)),
        name,
        password=body.password,
    )[1]


@router.post("/api/users/{name}/role", response_model=UserInfo, responses=USER_RESPONSES)
def set_role(request: Request, body: RoleBody, name: UserName, user: User = Depends(ADMIN)) -> UserInfo:
    """Change a user's role (admin); it applies from the user's next request. The last enabled
    admin cannot be demoted (409)."""
    return user_change(
        request,
        lambda conn: usermod.set_role(conn, name, body.role, keep_an_admin=True, **actor(request, user)),
        name,
    )[1]


@router.post("/api/users/{name}/disable", response_model=UserInfo, responses=USER_RESPONSES)
def disable(request: Request, name: UserName, user: User = Depends(ADMIN)) -> UserInfo:
    """Disable a user (admin): ends its sessions and revokes its API tokens. The last enabled
    admin cannot be disabled (409)."""
    return user_change(
        request,
        lambda conn: usermod.set_disabled(conn, name, True, keep_an_admin=True, **actor(request, user)),
        name,
    )[1]


@router.post("/api/users/{name}/enable", response_model=UserInfo, responses=USER_RESPONSES)
def enable(request: Request, name: UserName, user: User = Depends(ADMIN)) -> UserInfo:
    """Enable a disabled user (admin); its old tokens stay revoked."""
    return user_change(
        request, lambda conn: usermod.set_disabled(conn, name, False, **actor(request, user)), name
    )[1]


@router.post("/api/users/{name}/password", response_model=UserInfo, responses=USER_RESPONSES)
def set_password(
    request: Request, body: PasswordBody, name: UserName, user: User = Depends(ADMIN)
) -> UserInfo:
    """Set a new password (admin; at least 10 characters, else 422); ends that user's sessions."""
    return user_change(
        request,
        lambda conn, pw: usermod.set_password(conn, name, pw, **actor(request, user)),
        name,
        password=body.password,
    )[1]


@router.post("/api/users/{name}/token", response_model=NewToken, responses=USER_RESPONSES)
def new_token(
    request: Request,
    response: Response,
    name: UserName,
    body: TokenBody | None = None,
    user: User = Depends(ADMIN),
) -> NewToken:
    """A new API token for the user (admin), valid ``expires_days`` days (default 90), returned
    this once (only its hash is stored); use it as ``Authorization: Bearer ...``. 409 for a
    disabled user."""
    days = (body or TokenBody()).expires_days

    def make(conn):
        token = usermod.new_token(conn, name, expires_days=days, **actor(request, user))
        return token, usermod.token_record(conn, token)

    (token, made), _info_after = user_change(request, make, name)
    response.headers["Cache-Control"] = "no-store"
    return NewToken(name=name, token=token, id=made["id"], expires_at=made["expires_at"])


def _tokens(request: Request, name: str) -> TokenList:
    try:
        with request.app.state.reader.connect() as conn:
            rows = usermod.list_tokens(conn, name, clock(request))
    except usermod.NoSuchUser as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return TokenList(tokens=[TokenInfo(**{k: r[k] for k in TokenInfo.model_fields}) for r in rows])


@router.get("/api/users/{name}/tokens", response_model=TokenList, responses=ERROR_RESPONSES)
def list_tokens(request: Request, name: UserName, _user: User = Depends(ADMIN)) -> TokenList:
    """The user's API tokens, newest first (admin): id, when made, when it expires (null: never,
    for tokens made before tokens expired), revoked, state. Never the token or its hash."""
    return _tokens(request, name)


@router.post(
    "/api/users/{name}/tokens/{token_id}/revoke", response_model=TokenInfo, responses=ERROR_RESPONSES
)
def revoke_token(
    request: Request,
    name: UserName,
    token_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    user: User = Depends(ADMIN),
) -> TokenInfo:
    """Revoke one of the user's API tokens (admin); it stops working at once. 404 if the user has
    no token with that id. Revoking a revoked token changes nothing."""
    user_change(
        request, lambda conn: usermod.revoke_token(conn, token_id, name=name, **actor(request, user)), name
    )
    return next(t for t in _tokens(request, name).tokens if t.id == token_id)
