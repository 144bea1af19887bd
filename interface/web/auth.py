"""Who is asking, and may they: FastAPI dependencies, login/logout, the audit trail and masking.

Two ways in:

* **Bearer API tokens** (``Authorization: Bearer ie_...``) for machines; no cookie, so no CSRF.
* **Browser sessions**: ``POST /login`` sets the ``interface_session`` cookie (HttpOnly,
  SameSite=Lax; Secure over https: ``--web-tls``). Users are local (a password here) or, with
  ``directory.yaml``, the hospital directory's (LDAP bind, role from groups: :mod:`interface.desk.directory`;
  local names win, so a local break-glass admin works when the directory is down; API tokens
  are for local accounts only). The password is checked off the write path and
  failed sign-ins are limited per source, never by locking the account (:mod:`interface.desk.signin`). Unsafe requests (POST, PUT, PATCH, DELETE) authenticated by
  the cookie must carry the session's CSRF token in an ``X-CSRF-Token`` header or a
  ``csrf_token`` form field, else 403.

Roles and what they may do (``admin`` may do everything; ``require(...)`` always lets admin in):

==========  ================================================================================
role        may
==========  ================================================================================
clerk       charts, documents, messages (read), error queue (read, retry, discard, resubmit)
analyst     channels, messages (read), error queue (read, retry, discard, resubmit)
auditor     the audit log (read only) and channel status
release     release of information: requests, authorizations, releases, the disclosure log and
            accountings (``/roi``, ``/api/roi``); clerks may log requests and verify identity
admin       everything above, and users (``interface users``, ``/users``, ``/api/users``)
==========  ================================================================================

Any authenticated user may read ``/api/channels`` and ``/api/me``; ``/api/health``, ``/api/docs``, ``/login``
and ``/metrics`` need no login (they hold no patient data).

For route modules and templates: ``Depends(require("clerk", "analyst"))`` returns the
:class:`~interface.desk.users.User`; afterwards ``request.state.user`` is the user and
``request.state.csrf_token`` the session's CSRF token (None for token auth) to put into forms.
Unauthenticated API calls get 401 JSON; HTML page requests are redirected to ``/login?next=...``.
:func:`record_audit` writes one ``audit`` row; :func:`mask` hides identifiers in lists.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator, BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from interface.desk import masking, signin
from interface.desk import users as usermod
from interface.desk.users import User
from interface.store import audit as store_audit

log = logging.getLogger("interface.web.auth")

COOKIE = "interface_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLES = usermod.ROLES

ERROR_RESPONSES: dict = {
    400: {"description": "bad request"},
    401: {"description": "not authenticated"},
    403: {"description": "not allowed"},
    404: {"description": "not found"},
    422: {"description": "invalid parameters"},
}

# Role groups for routes (admin is always allowed on top of these).
CHARTS = ("clerk",)
DOCUMENTS = ("clerk",)
MESSAGES = ("clerk", "analyst")
ERRORS = ("clerk", "analyst")
AUDIT = ("auditor",)
OPERATE = ("analyst",)  # running channels: pause, resume, retry a destination, reload
ROI_INTAKE = ("clerk", "release")  # log a request, verify identity, see the ROI queue
ROI_RELEASE = ("release",)  # authorizations, releases, packets, disclosures, accountings
ANY = ()  # any authenticated user

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

_bearer = HTTPBearer(auto_error=False, description="API token from `interface users token NAME`")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="browser session from POST /login")


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC (everything is stored in UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]  # for response models


class LoginRequired(Exception):
    """Raised by :func:`require` when nobody is logged in; the app answers 401 JSON for API calls
    and redirects HTML requests to the login page."""


def clock(request: Request) -> datetime:
    c = getattr(request.app.state, "clock", None)
    return c() if c is not None else datetime.now(timezone.utc)


def _identify(request: Request, token: str | None, sid: str | None):
    """(user, csrf token, how) or (None, None, None). Runs in a worker thread (database)."""
    now = clock(request)
    with request.app.state.reader.connect() as conn:
        if token:
            user = usermod.user_for_token(conn, token, now)
            return (user, None, "token") if user else (None, None, None)
        if sid:
            found = usermod.session_user(conn, sid, now)
            if found:
                return found[0], found[1], "session"
    return None, None, None


def wants_html(request: Request) -> bool:
    """A browser page or an htmx fragment request (htmx sends ``HX-Request``, Accept ``*/*``)."""
    return not request.url.path.startswith(("/api/", "/fhir/")) and (
        "text/html" in request.headers.get("accept", "") or request.headers.get("hx-request") == "true"
    )


def require(*roles: str):
    """A dependency: the authenticated user, if their role is one of ``roles`` (or admin).
    No roles: any authenticated user. 401 when not logged in, 403 for the wrong role or a
    missing/wrong CSRF token on a cookie-authenticated unsafe request."""
    for r in roles:
        if r not in ROLES:
            raise ValueError(f"unknown role {r!r}")
    allowed = frozenset(roles) | {"admin"}

    async def dependency(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
        sid: str | None = Depends(_cookie),
    ) -> User:
        cached = getattr(request.state, "auth", None)
        if cached is None:
            token = bearer.credentials if bearer is not None else None
            cached = await run_in_threadpool(_identify, request, token, sid)
            request.state.auth = cached
        user, csrf, how = cached
        if user is None:
            raise LoginRequired()
        if how == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                sent = (await request.form()).get("csrf_token")
            if not sent or not isinstance(sent, str) or not _same(sent, csrf):
                raise HTTPException(status_code=403, detail="missing or invalid CSRF token")
        if roles and user.role not in allowed:
            raise HTTPException(
                status_code=403,
                detail=f"role {user.role!r} may not do this (needs {' or '.join(sorted(allowed))})",
            )
        request.state.user = user
        request.state.csrf_token = csrf
        return user

    return dependency


def _same(a: str, b: str | None) -> bool:
    import hmac

    return b is not None and hmac.compare_digest(a.encode(), b.encode())


# -- audit and masking ----------------------------------------------------------------------------


def record_audit(
    conn,
    *,
    user: User | str,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    reason: str | None = None,
    detail: str | dict | None = None,
    now: datetime,
    patient: str | None = None,
    via: str | None = None,
) -> None:
    """One entry in the audit trail (:func:`interface.store.audit.record`, in ``conn``'s
    transaction): who, what, on what, why, when; ``patient`` the MRN of the patient the entry is
    about (the access report); ``via`` console/api/fhir (default: the request's, see
    :func:`via_of`)."""
    store_audit.record(
        conn,
        user=user.name if isinstance(user, User) else user,
        action=action,
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        detail=detail,
        now=now,
        patient=patient,
        via=via,
    )


def via_of(request: Request) -> str:
    """How a request came: ``fhir``, ``api`` or ``console``."""
    path = request.url.path
    return "fhir" if path.startswith("/fhir") else "api" if path.startswith("/api/") else "console"


def audit_now(request: Request, **kw) -> None:
    """Write one audit row in its own transaction (for reads: views, searches, reveals)."""
    kw.setdefault("via", via_of(request))
    with request.app.state.engine.begin() as conn:
        record_audit(conn, user=request.state.user, now=clock(request), **kw)


def audit_listed(
    request: Request,
    mrns: Iterable[str | None],
    *,
    action: str = "search",
    target_type: str = "patient",
    detail: str | dict | None = None,
) -> None:
    """A search's results as the access report needs them: one entry per patient listed (the
    page shown; each MRN once), or one entry without a patient when nothing was listed."""
    user = getattr(request.state, "user", None)
    if user is None:  # a router mounted without require() (its includer authenticates): no one
        return
    with request.app.state.engine.begin() as conn:
        store_audit.record_listed(
            conn,
            mrns,
            user=user.name if isinstance(user, User) else user,
            now=clock(request),
            action=action,
            target_type=target_type,
            detail=detail,
            via=via_of(request),
        )


mask = masking.mask  # identifiers in lists: one rule for every interface (interface.desk.masking)


def audit_access(target_type: str, param: str):
    """A dependency for read routers (patients, documents; API and FHIR): audits each request,
    before it is answered, as a view of ``path_params[param]`` with the patient it belongs to (a
    patient's MRN is the parameter; a document's is looked up), or as a search with its query
    string (the handler adds one ``listed`` entry per patient shown: :func:`audit_listed`), by the
    authenticated user. Put it after :func:`require` in the route's dependencies."""

    def dependency(request: Request) -> None:
        target = request.path_params.get(param)
        patient = None
        if target is not None:
            action, detail = "view", request.url.path
            if target_type == "patient":
                patient = target
            elif target_type == "document":
                with request.app.state.reader.connect() as conn:
                    patient = store_audit.document_patient(
                        conn, target, request.query_params.get("namespace")
                    )
        else:
            action, detail = "search", {k: v for k, v in request.query_params.items()}
            q = request.query_params
            asked = (q.get("mrn") or q.get("patient") or q.get("subject") or "").strip()
            patient = asked.removeprefix("Patient/") or None  # a search by one patient is about them
        audit_now(
            request,
            action=action,
            target_type=target_type,
            target_id=target,
            detail=detail,
            patient=patient,
        )

    return dependency


# -- login, logout, me, audit log ------------------------------------------------------------------

router = APIRouter()


def _safe_next(nxt: str | None) -> str:
    """Only same-site relative paths: no open redirect."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


LOGIN_COOKIE = "interface_login"  # login CSRF: double-submit token between the form and POST /login


def _login_page(request: Request, next: str, error: str | None, status_code: int = 200):
    """The login form with a fresh double-submit token (cookie + hidden field), so another site
    cannot post its own credentials to /login and log a clerk into the wrong account."""
    token = secrets.token_urlsafe(24)
    resp = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"next": _safe_next(next), "error": error, "login_token": token},
        status_code=status_code,
    )
    resp.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return resp


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request, next: str = "/"):
    return _login_page(request, next, None)


_limiter_mutex = threading.Lock()


def limiter(request: Request) -> signin.Limiter:
    """The app's sign-in limiter (one per app: the counts of this console process)."""
    with _limiter_mutex:
        lim = getattr(request.app.state, "signin_limiter", None)
        if lim is None:
            lim = request.app.state.signin_limiter = signin.Limiter()
        return lim


def _client_address(request: Request) -> str:
    return (request.client.host if request.client else None) or "-"


def _wait_text(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
    login_token: str = Form(""),
):
    """Sign in. The order matters (see :mod:`interface.desk.signin`): the login form's token; the
    limits of this source (refused before any hashing or database work); the password, checked
    with no transaction open; then one short transaction for the session (success) or one audit
    row (failure: it names the user only if the name is a user's)."""
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not login_token or not _same(login_token, expected):
        return _login_page(request, next, "Your login form expired; please log in again.", status_code=403)
    engine = request.app.state.engine
    now = clock(request)
    name, password = username[:128], password[:1024]
    if "\x00" in name:  # no user's name (and PostgreSQL refuses NUL in a query): a failed sign-in
        name = ""
    address = _client_address(request)
    lim = limiter(request)
    wait = lim.retry_after(address, name)
    if wait is not None:
        resp = _login_page(
            request,
            next,
            "Too many failed sign-ins from this computer; try again in "
            f"{_wait_text(wait)}, or ask an administrator.",
            status_code=429,
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    directory = getattr(request.app.state, "directory", None)
    try:
        checked = (
            signin.check_password(request.app.state.reader, name, password, directory)
            if name and password
            else None
        )
    except signin.Busy:
        return _login_page(
            request, next, "The console is busy; please try again in a moment.", status_code=503
        )
    except signin.DirectoryDown as exc:
        log.warning("sign-in: the directory cannot be reached (%s)", exc)
        with engine.begin() as conn:
            record_audit(
                conn,
                user="-",
                action="login_failed",
                target_type="user",
                detail={"from": address, "directory": "unreachable"},
                now=now,
            )
        return _login_page(request, next, DIRECTORY_DOWN, status_code=503)
    sid = None
    error = "Wrong user name or password."
    if isinstance(checked, signin.DirectoryChecked):
        with engine.begin() as conn:
            sid = _start_directory_session(conn, checked, now, address)
        if checked.answer.outcome == "no_role":
            error = "Your directory account has no role in this console; ask an administrator."
    elif checked is not None:
        with engine.begin() as conn:
            sid = _start_session(conn, checked, now, address)
    if sid is None:
        tripped = lim.failed(address, name)
        known = bool(name) and signin.is_user(request.app.state.reader, name)
        with engine.begin() as conn:  # the name only if it is a user's: never a mistyped password
            record_audit(
                conn,
                user=name if known else "-",
                action="login_failed",
                target_type="user",
                target_id=name if known else None,
                detail={"from": address},
                now=now,
            )
            if tripped:
                record_audit(
                    conn,
                    user=name if known else "-",
                    action="login_limited",
                    target_type="user",
                    target_id=name if known else None,
                    detail={"from": address},
                    now=now,
                )
        return _login_page(request, next, error, status_code=401)
    lim.succeeded(address, name)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    resp.set_cookie(
        COOKIE,
        sid,
        max_age=int(usermod.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return resp


def _start_session(conn, checked: "signin.Checked", now: datetime, address: str) -> str | None:
    """The session of a verified sign-in, if the user is still enabled with the password hash that
    was verified (not changed between the check and this transaction); else None. Stores the
    re-hash the check prepared, if any. No hashing here: this holds the write lock on SQLite."""
    row = conn.execute(
        select(usermod.users.c.password_hash, usermod.users.c.disabled).where(
            usermod.users.c.id == checked.user.id
        )
    ).first()
    if row is None or row.disabled or row.password_hash != checked.password_hash:
        return None
    if checked.rehashed is not None:
        conn.execute(
            usermod.users.update()
            .where(usermod.users.c.id == checked.user.id)
            .values(password_hash=checked.rehashed)
        )
    sid, _csrf = usermod.create_session(conn, checked.user, now)
    record_audit(
        conn,
        user=checked.user,
        action="login",
        target_type="user",
        target_id=checked.user.name,
        detail={"from": address},
        now=now,
    )
    return sid


DIRECTORY_DOWN = (
    "The hospital directory cannot be reached, so directory accounts cannot sign in just now; "
    "please try again in a few minutes. Local accounts still sign in."
)


def _start_directory_session(
    conn, checked: "signin.DirectoryChecked", now: datetime, address: str
) -> str | None:
    """The session of a directory sign-in the directory said yes to, after creating or updating
    the user's local record; a no (unknown user, no mapped group) disables an existing record.
    None when there is no session to start (wrong password, no role, a local user's name)."""
    answer = checked.answer
    if answer.outcome not in ("ok", "unknown", "no_role"):
        return None  # a refused bind (wrong password): the record stays as it is
    user = usermod.sync_directory_user(conn, checked.name, answer.role if checked.ok else None, now)
    if user is None or not checked.ok:
        return None
    sid, _csrf = usermod.create_session(conn, user, now)
    record_audit(
        conn,
        user=user,
        action="login",
        target_type="user",
        target_id=user.name,
        detail={"from": address, "via": "directory"},
        now=now,
    )
    return sid


@router.post("/logout", include_in_schema=False)
def logout(request: Request, user: User = Depends(require())):
    sid = request.cookies.get(COOKIE)
    with request.app.state.engine.begin() as conn:
        if sid:
            usermod.end_session(conn, sid)
        record_audit(
            conn, user=user, action="logout", target_type="user", target_id=user.name, now=clock(request)
        )
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


class Me(BaseModel):
    name: str
    role: str
    csrf_token: str | None


@router.get("/api/me", response_model=Me, tags=["auth"], responses=ERROR_RESPONSES)
def me(request: Request, user: User = Depends(require())) -> Me:
    """The authenticated user, and the CSRF token to send with unsafe requests (sessions only)."""
    return Me(name=user.name, role=user.role, csrf_token=request.state.csrf_token)


MAX_ID = 2**63 - 1


def utc_param(value: datetime, name: str) -> datetime:
    """A date-time query parameter in UTC (naive means UTC); 400 when it cannot be expressed."""
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise HTTPException(status_code=400, detail=f"{name}: date-time out of range") from None


def login_redirect(request: Request):
    """Send a browser without a session to the login form, keeping where it was going. An htmx
    request (a fragment refresh, e.g. the dashboard's) gets ``HX-Redirect`` so the whole page goes
    to the login form instead of the form being swapped into a corner of the page."""
    if request.headers.get("hx-request") == "true":
        page = request.headers.get("hx-current-url") or "/"
        parts = urlsplit(page)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Response(status_code=401, headers={"HX-Redirect": f"/login?next={quote(target, safe='')}"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
