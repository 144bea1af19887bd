"""Console users, roles, API tokens and login sessions; ``interface users`` on the command line.

Tables (on ``interface.store.schema.metadata``):

* ``users``: name, role (clerk, analyst, admin, auditor, release: see ``interface.web.auth``), argon2id password hash, disabled flag.
* ``api_tokens``: Bearer tokens for machines. Only the SHA-256 of a token is stored; the token is
  printed once when made (``interface users token NAME [--expires-days N]``). Tokens are 256-bit
  random, so a fast hash is enough (no KDF needed) and lets a lookup be one indexed equality.
  Each has an expiry (``expires_at``; default :data:`TOKEN_DAYS` days; NULL for tokens made
  before migration 0007, which never expire), is listed (:func:`list_tokens`, never the token)
  and revoked one by one (:func:`revoke_token`); a new password or disabling the user revokes
  all of the user's tokens. A token may carry SMART-style scopes (``--scope user/*.read``,
  :mod:`interface.desk.scopes`) for ``/fhir``, and a patient they are bound to (``--patient``).
* ``sessions``: browser logins. The cookie holds a random session id; the table keeps its SHA-256,
  the user, the expiry and the session's CSRF token. Logging out, disabling the user or changing
  the password ends sessions at once (no signed cookie that stays valid until it expires).

Passwords: the policy is :mod:`interface.desk.passwords`'. Hashing (argon2id, 100-300 ms of CPU) is
never done inside a database transaction by the console or the CLI: they call
:func:`new_password` first, outside any transaction, and hand the :class:`NewPassword` to
:func:`add_user` / :func:`set_password` (a plain ``str`` is still accepted, checked and hashed on
the spot, for scripts and tests). Sign-in verifies in :mod:`interface.desk.signin`, also outside.

Every change made here writes an ``audit`` row (user management is a change like any other).
The same functions serve the CLI, ``/api/users`` (:mod:`interface.web.api.users`) and the console's
``/users`` page; those two pass ``keep_an_admin=True`` so the last enabled admin cannot be
disabled or demoted there.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Column, ForeignKey, Index, String, Table, insert, select, update
from sqlalchemy.engine import Connection, Engine

from interface.desk import passwords
from interface.desk import scopes as scopemod
from interface.store import audit as store_audit
from interface.store.schema import TS, Id, metadata

ROLES = ("clerk", "analyst", "admin", "auditor", "release")
LOCAL, DIRECTORY = "local", "directory"  # users.source
DIRECTORY_PASSWORD = "!directory"  # a directory user's password_hash: no password matches it
SESSION_LIFETIME = timedelta(hours=8)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", TS, nullable=False),
    Column("password_changed_at", TS, nullable=False),
    Column("last_login_at", TS, nullable=True),  # the last console sign-in (None: never)
    # local: a password in this database; directory: signs in against the hospital's directory
    # (interface.desk.directory), role and enabled state from the directory at each sign-in
    Column("source", String(16), nullable=False, server_default="local"),
    # directory: the directory's answer disabled the user (its next yes enables it again);
    # None: an administrator did (only an administrator enables it again)
    Column("disabled_by", String(16), nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("expires_at", TS, nullable=True),  # NULL: made before expiry existed (0007): never expires
    # SMART-style scopes, space-separated (interface.desk.scopes); NULL/'': no FHIR access (0013)
    Column("scopes", String(1000), nullable=True),
    Column("patient", String(128), nullable=True),  # the MRN patient/ scopes are bound to
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)
Index("ix_sessions_user", sessions.c.user_id)

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
TOKEN_PREFIX = "ie_"
TOKEN_DAYS = 90  # a new API token's lifetime unless told otherwise
MAX_TOKEN_DAYS = 3650


class UserError(Exception):
    """A user-management request that cannot be done (unknown user, bad role, short password)."""


class NoSuchUser(UserError):
    """The named user does not exist."""


class UserConflict(UserError):
    """The request clashes with the current state: the name is taken, the user is disabled, or it
    would leave no enabled admin."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    scopes: tuple[str, ...] | None = None  # a token's FHIR scopes; None: a console session
    patient: str | None = None  # the MRN a token's patient/ scopes are bound to


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _audit(conn, now, actor, action, target, detail=None):
    store_audit.record(
        conn, user=actor, action=action, target_type="user", target_id=target, detail=detail, now=now
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (no database: call it outside transactions)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


def dummy_verify(password: str) -> None:
    """The same work as a real verification (an unknown user name costs what a known one does:
    no user-name oracle by timing)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("not-a-real-password")
    verify_password(_DUMMY_HASH, password)


_DUMMY_HASH = None


@dataclass(frozen=True)
class NewPassword:
    """A password that met the policy, already hashed (made by :func:`new_password`)."""

    hash: str


def new_password(password: str, name: str | None = None) -> NewPassword:
    """Check ``password`` against the policy for user ``name`` and hash it. Call it before the
    transaction that stores it: hashing takes 100-300 ms, and on SQLite a transaction holds the
    write lock that every sender's ACK waits for."""
    _check_password(password, name)
    return NewPassword(hash_password(password))


def _check_password(password: str, name: str | None = None) -> None:
    try:
        passwords.check(password, name)
    except passwords.PolicyError as exc:
        raise UserError(str(exc)) from None


def _hash_of(password: "str | NewPassword", name: str) -> str:
    if isinstance(password, NewPassword):
        return password.hash
    _check_password(password, name)
    return hash_password(password)


# -- management -----------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """The user name without surrounding spaces, or UserError."""
    name = name.strip()
    if not name or len(name) > 128 or any(c.isspace() or c == "\x00" for c in name):
        raise UserError("a user name is 1-128 characters without spaces")
    return name


def add_user(
    conn: Connection,
    name: str,
    role: str,
    password: "str | NewPassword",
    *,
    actor: str = "cli",
    now: datetime | None = None,
) -> int:
    """A new user. ``password``: a :class:`NewPassword` (checked and hashed before the
    transaction), or a ``str`` checked and hashed here."""
    now = now or utcnow()
    name = check_name(name)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    password_hash = _hash_of(password, name)
    if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
        raise UserConflict(f"user {name!r} already exists")
    uid = conn.execute(
        insert(users)
        .values(
            name=name,
            role=role,
            password_hash=password_hash,
            disabled=False,
            created_at=now,
            password_changed_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    _audit(conn, now, actor, "user_add", name, f"role={role}")
    return uid


def _user_row(conn, name: str):
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NoSuchUser(f"no user {name!r}")
    return row


def _keep_an_admin(conn, row) -> None:
    """Refuse to take away the last enabled admin (``row`` is an enabled admin about to be disabled
    or demoted). The enabled admins' rows are locked until commit, in id order, so two admins
    cannot remove each other at the same time (the second waits, then sees the first's change)."""
    admins = (
        conn.execute(
            select(users.c.id)
            .where(users.c.role == "admin", users.c.disabled.is_(False))
            .order_by(users.c.id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    if not [i for i in admins if i != row.id]:
        raise UserConflict(f"{row.name!r} is the last enabled admin; make another admin first")


def set_role(
    conn: Connection,
    name: str,
    role: str,
    *,
    actor: str = "cli",
    now: datetime | None = None,
    keep_an_admin: bool = False,
) -> None:
    """Change a user's role (takes effect at the user's next request: roles are read live).
    ``keep_an_admin``: refuse to demote the last enabled admin."""
    now = now or utcnow()
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    row = _user_row(conn, name)
    if row.source == DIRECTORY:
        raise UserConflict(f"{name!r} signs in with the directory: its role comes from its groups there")
    if row.role == role:
        return
    if keep_an_admin and row.role == "admin" and not row.disabled:
        _keep_an_admin(conn, row)
    conn.execute(update(users).where(users.c.id == row.id).values(role=role))
    _audit(conn, now, actor, "user_role", name, f"role={row.role}->{role}")


def set_password(
    conn: Connection,
    name: str,
    password: "str | NewPassword",
    *,
    actor: str = "cli",
    now: datetime | None = None,
) -> None:
    """New password (a :class:`NewPassword`, or a ``str`` checked and hashed here); ends the
    user's sessions and revokes its API tokens (whoever had the old password may have made one)."""
    now = now or utcnow()
    password_hash = _hash_of(password, name)
    row = _user_row(conn, name)
    if row.source == DIRECTORY:
        raise UserConflict(f"{name!r} signs in with the directory: its password is the directory's")
    conn.execute(
        update(users).where(users.c.id == row.id).values(password_hash=password_hash, password_changed_at=now)
    )
    conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
    conn.execute(
        update(api_tokens)
        .where(api_tokens.c.user_id == row.id, api_tokens.c.revoked.is_(False))
        .values(revoked=True)
    )
    _audit(conn, now, actor, "user_passwd", name)


def set_disabled(
    conn: Connection,
    name: str,
    disabled: bool = True,
    *,
    actor: str = "cli",
    now: datetime | None = None,
    keep_an_admin: bool = False,
) -> None:
    """Disable (or enable) a user; disabling ends its sessions and revokes its API tokens.
    ``keep_an_admin``: refuse to disable the last enabled admin."""
    now = now or utcnow()
    row = _user_row(conn, name)
    if keep_an_admin and disabled and row.role == "admin" and not row.disabled:
        _keep_an_admin(conn, row)
    conn.execute(update(users).where(users.c.id == row.id).values(disabled=disabled, disabled_by=None))
    if disabled:
        conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
        conn.execute(update(api_tokens).where(api_tokens.c.user_id == row.id).values(revoked=True))
    _audit(conn, now, actor, "user_disable" if disabled else "user_enable", name)


def new_token(
    conn: Connection,
    name: str,
    *,
    expires_days: int = TOKEN_DAYS,
    actor: str = "cli",
    now: datetime | None = None,
    scopes: str | list[str] | None = None,
    patient: str | None = None,
) -> str:
    """A new API token for ``name``, valid ``expires_days`` days (1 to :data:`MAX_TOKEN_DAYS`),
    returned once; only its hash is stored. ``scopes``: SMART-style read scopes for ``/fhir``
    (none: the token reads no FHIR); ``patient``: the MRN ``patient/`` scopes are bound to."""
    now = now or utcnow()
    if not isinstance(expires_days, int) or not 1 <= expires_days <= MAX_TOKEN_DAYS:
        raise UserError(f"a token's lifetime is 1 to {MAX_TOKEN_DAYS} days")
    try:
        granted = scopemod.parse(" ".join(scopes) if isinstance(scopes, list) else scopes)
    except scopemod.ScopeError as exc:
        raise UserError(str(exc)) from None
    if scopemod.needs_patient(granted) and not (patient or "").strip():
        raise UserError("patient/ scopes need the patient they are for (--patient MRN): there is no launch")
    if patient and not scopemod.needs_patient(granted):
        raise UserError("--patient binds patient/ scopes; give one (e.g. --scope patient/*.read)")
    row = _user_row(conn, name)
    if row.disabled:
        raise UserConflict(f"user {name!r} is disabled")
    if row.source == DIRECTORY:
        raise UserConflict(f"{name!r} signs in with the directory; API tokens are for local accounts")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = conn.execute(
        insert(api_tokens)
        .values(
            user_id=row.id,
            token_sha256=_sha(token),
            created_at=now,
            revoked=False,
            expires_at=now + timedelta(days=expires_days),
            scopes=" ".join(granted) or None,
            patient=(patient or "").strip() or None,
        )
        .returning(api_tokens.c.id)
    ).scalar_one()
    detail = f"id={tid} expires_days={expires_days}" + (f" scopes={' '.join(granted)}" if granted else "")
    _audit(conn, now, actor, "token_create", name, detail)
    return token


def token_record(conn: Connection, token: str) -> dict:
    """id, created_at, expires_at and revoked of the token (not the token or its hash)."""
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.created_at, api_tokens.c.expires_at, api_tokens.c.revoked).where(
            api_tokens.c.token_sha256 == _sha(token)
        )
    ).one()
    return dict(row._mapping)


def token_state(row, now: datetime) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if row.revoked:
        return "revoked"
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        return "expired"
    return "active"


def list_tokens(conn: Connection, name: str, now: datetime | None = None) -> list[dict]:
    """The user's API tokens, newest first, without the token or its hash: id, created_at,
    expires_at (None: never), revoked, scopes (None: no FHIR), state (active, expired, revoked)."""
    now = now or utcnow()
    row = _user_row(conn, name)
    rows = conn.execute(
        select(
            api_tokens.c.id,
            api_tokens.c.created_at,
            api_tokens.c.expires_at,
            api_tokens.c.revoked,
            api_tokens.c.scopes,
        )
        .where(api_tokens.c.user_id == row.id)
        .order_by(api_tokens.c.id.desc())
    ).all()
    return [{**r._mapping, "state": token_state(r, now)} for r in rows]


def revoke_token(
    conn: Connection,
    token_id: int,
    *,
    name: str | None = None,
    actor: str = "cli",
    now: datetime | None = None,
) -> str:
    """Revoke one API token by its id (``name``: it must be that user's, else NoSuchUser);
    returns its user's name. Revoking a revoked token changes nothing."""
    now = now or utcnow()
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.revoked, users.c.name)
        .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
        .where(api_tokens.c.id == token_id)
    ).first()
    if row is None or (name is not None and row.name != name):
        raise NoSuchUser(f"no API token {token_id}" + (f" of {name!r}" if name is not None else ""))
    if not row.revoked:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked=True))
        _audit(conn, now, actor, "token_revoke", row.name, f"id={token_id}")
    return row.name


def list_users(conn: Connection) -> list[dict]:
    """Every user without secrets (no hash): id, name, role, disabled, created_at,
    password_changed_at, last_login_at, source (local or directory)."""
    rows = conn.execute(
        select(
            users.c.id,
            users.c.name,
            users.c.role,
            users.c.disabled,
            users.c.created_at,
            users.c.password_changed_at,
            users.c.last_login_at,
            users.c.source,
        ).order_by(users.c.name)
    ).all()
    return [dict(r._mapping) for r in rows]


def sync_directory_user(conn: Connection, name: str, role: str | None, now: datetime) -> User | None:
    """Bring the local record of a directory user in line with what the directory just said
    (``role``: the role its groups give, None when it said no: unknown, or in no mapped group).

    Yes: the record is created (``source`` directory, no usable password) or its role updated, and
    enabled again if the directory had disabled it; returns the user. No: an enabled record is
    disabled (its sessions end); returns None. Also None when the name is a local user's (local
    accounts win for their own names) or an administrator disabled the record. Audited as
    ``directory``."""
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is not None and row.source != DIRECTORY:
        return None
    if role is None:
        if row is not None and not row.disabled:
            conn.execute(
                update(users).where(users.c.id == row.id).values(disabled=True, disabled_by=DIRECTORY)
            )
            conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
            _audit(conn, now, "directory", "user_disable", name, "the directory gives no role")
        return None
    if row is None:
        uid = conn.execute(
            insert(users)
            .values(
                name=name,
                role=role,
                password_hash=DIRECTORY_PASSWORD,
                disabled=False,
                created_at=now,
                password_changed_at=now,
                source=DIRECTORY,
            )
            .returning(users.c.id)
        ).scalar_one()
        _audit(conn, now, "directory", "user_add", name, f"role={role} source=directory")
        return User(uid, name, role)
    if row.disabled and row.disabled_by != DIRECTORY:
        return None  # an administrator disabled it: only an administrator enables it again
    if row.disabled:
        conn.execute(update(users).where(users.c.id == row.id).values(disabled=False, disabled_by=None))
        _audit(conn, now, "directory", "user_enable", name)
    if row.role != role:
        conn.execute(update(users).where(users.c.id == row.id).values(role=role))
        _audit(conn, now, "directory", "user_role", name, f"role={row.role}->{role}")
    return User(row.id, name, role)


# -- authentication ---------------------------------------------------------------------------------


def authenticate(conn: Connection, name: str, password: str) -> User | None:
    """The user if the name and password match an enabled account, else None. For scripts and
    tests: it hashes while ``conn`` is checked out. The console signs in with
    :func:`interface.desk.signin.check_password`, which does not."""
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        dummy_verify(password)
        return None
    if not verify_password(row.password_hash, password) or row.disabled:
        return None
    return User(row.id, row.name, row.role)


def user_for_token(conn: Connection, token: str, now: datetime | None = None) -> User | None:
    """The user of a live token: not revoked, not expired, its user enabled; else None."""
    now = now or utcnow()
    row = conn.execute(
        select(
            users.c.id,
            users.c.name,
            users.c.role,
            api_tokens.c.expires_at,
            api_tokens.c.scopes,
            api_tokens.c.patient,
        )
        .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id))
        .where(
            api_tokens.c.token_sha256 == _sha(token),
            api_tokens.c.revoked.is_(False),
            users.c.disabled.is_(False),
        )
    ).first()
    if row is None or (row.expires_at is not None and _aware(row.expires_at) <= now):
        return None
    return User(row.id, row.name, row.role, tuple((row.scopes or "").split()), row.patient)


def create_session(conn: Connection, user: User, now: datetime) -> tuple[str, str]:
    """A new login session: returns (session id for the cookie, CSRF token). Records the sign-in
    time on the user (``last_login_at``: the users list shows accounts nobody uses any more)."""
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        insert(sessions).values(
            id_sha256=_sha(sid),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    conn.execute(update(users).where(users.c.id == user.id).values(last_login_at=now))
    # Expired sessions are swept at each login, so the table stays small.
    conn.execute(sessions.delete().where(sessions.c.expires_at < now))
    return sid, csrf


def session_user(conn: Connection, sid: str, now: datetime) -> tuple[User, str] | None:
    """(user, CSRF token) of a live session, or None."""
    row = conn.execute(
        select(users.c.id, users.c.name, users.c.role, sessions.c.csrf_token, sessions.c.expires_at)
        .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
        .where(sessions.c.id_sha256 == _sha(sid), users.c.disabled.is_(False))
    ).first()
    if row is None or _aware(row.expires_at) <= now:
        return None
    return User(row.id, row.name, row.role), row.csrf_token


def end_session(conn: Connection, sid: str) -> None:
    conn.execute(sessions.delete().where(sessions.c.id_sha256 == _sha(sid)))


# -- command line -------------------------------------------------------------------------------------


def _read_password() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def _utc_text(dt: datetime) -> str:
    """``2026-11-24 05:30:00 UTC`` (SQLite hands back naive datetimes, which are UTC)."""
    return _aware(dt).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def cli_main(argv: list[str], engine: Engine) -> int:
    """``interface users add NAME --role R [--password-stdin] | list | passwd NAME |
    token NAME [--expires-days N] | tokens NAME | revoke-token ID | disable NAME | enable NAME``.

    Works on the database directly, so the console's sign-in limits never apply here: an admin
    locked out of the console by failed sign-ins can always reset a password with ``passwd``."""
    p = argparse.ArgumentParser(prog="interface users")
    sub = p.add_subparsers(dest="action", required=True)
    a = sub.add_parser("add", help="create a user (prints a generated password unless --password-stdin)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_parser("list", help="list users")
    pw = sub.add_parser("passwd", help="set a new password (prompted, or --password-stdin)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    t = sub.add_parser("token", help="print a new API token for the user (shown once)")
    t.add_argument("name")
    t.add_argument(
        "--expires-days",
        type=int,
        default=TOKEN_DAYS,
        metavar="N",
        help=f"days the token is valid (default {TOKEN_DAYS}, at most {MAX_TOKEN_DAYS})",
    )
    t.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="a SMART-style FHIR read scope (user/*.read, patient/Patient.read, ...); repeatable",
    )
    t.add_argument("--patient", metavar="MRN", help="the patient patient/ scopes are bound to")
    ts = sub.add_parser("tokens", help="list the user's API tokens (id, dates, state; never the token)")
    ts.add_argument("name")
    rt = sub.add_parser("revoke-token", help="revoke one API token by its id (from `tokens`)")
    rt.add_argument("id", type=int)
    d = sub.add_parser("disable", help="disable a user, end its sessions, revoke its tokens")
    d.add_argument("name")
    e = sub.add_parser("enable", help="enable a disabled user")
    e.add_argument("name")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.action == "list":
            with engine.connect() as conn:
                rows = list_users(conn)
            for r in rows:
                last = _utc_text(r["last_login_at"]) if r["last_login_at"] else "never"
                print(
                    f"{r['name']}\t{r['role']}\t{'disabled' if r['disabled'] else 'active'}\tlast sign-in {last}"
                )
            return 0
        if args.action == "add":
            generated = not args.password_stdin
            password = secrets.token_urlsafe(15) if generated else _read_password()
            prepared = new_password(password, check_name(args.name))  # hashed before the transaction
            with engine.begin() as conn:
                add_user(conn, args.name, args.role, prepared)
            if generated:
                print(f"user {args.name} ({args.role}) created; password (shown once): {password}")
            else:
                print(f"user {args.name} ({args.role}) created")
            return 0
        if args.action == "passwd":
            if args.password_stdin:
                password = _read_password()
            else:
                password = getpass.getpass("new password: ")
                if getpass.getpass("again: ") != password:
                    raise UserError("the passwords differ")
            with engine.connect() as conn:
                _user_row(conn, args.name)  # an unknown name is said before the password's faults
            prepared = new_password(password, args.name)  # hashed before the transaction
            with engine.begin() as conn:
                set_password(conn, args.name, prepared)
            print(f"password of {args.name} changed; its sessions ended and its API tokens revoked")
            return 0
        if args.action == "token":
            with engine.begin() as conn:
                token = new_token(
                    conn, args.name, expires_days=args.expires_days, scopes=args.scope, patient=args.patient
                )
            print(token)
            return 0
        if args.action == "tokens":
            with engine.connect() as conn:
                rows = list_tokens(conn, args.name)
            for r in rows:
                expires = _utc_text(r["expires_at"]) if r["expires_at"] else "never"
                scopes = r["scopes"] or "no FHIR scopes"
                print(
                    f"{r['id']}\t{r['state']}\tcreated {_utc_text(r['created_at'])}\texpires {expires}\t{scopes}"
                )
            return 0
        if args.action == "revoke-token":
            with engine.begin() as conn:
                owner = revoke_token(conn, args.id)
            print(f"token {args.id} of {owner} revoked")
            return 0
        if args.action in ("disable", "enable"):
            with engine.begin() as conn:
                set_disabled(conn, args.name, args.action == "disable")
            print(f"{args.name} {args.action}d")
            return 0
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown actions
