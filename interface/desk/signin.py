"""Console sign-in: checking a password off the write path, and limiting guesses per source.

**Off the write path.** A password check (argon2id, 100-300 ms of CPU) never runs while a
database connection is checked out, a transaction is open or, on SQLite, the write lock that
every sender's ACK waits for is held: :func:`check_password` reads the user's row through the
read-only engine (a WAL snapshot on SQLite) and gives the connection back *before* verifying.
:func:`interface.web.auth.login` then writes the session in a short transaction of its own, which
re-checks that the password hash it verified is still the user's (a password changed meanwhile
wins). At most :data:`HASH_SLOTS` verifications run at once in a process (a flood of sign-ins
from many addresses queues here instead of taking every core from the listeners); one that
waits longer than :data:`HASH_WAIT_SECONDS` is answered 503.

**Limits per source, not per account.** :class:`Limiter` counts *failed* sign-ins with the
``limits`` package (moving windows, in the process's memory):

* per client address and user name: :data:`PER_NAME_AND_ADDRESS` (5 per 15 minutes, 20 per
  day);
* per client address, whatever the names: :data:`PER_ADDRESS` (30 per 15 minutes: password
  spraying over many names).

A source over a limit is answered 429 with ``Retry-After`` until its oldest failure leaves the
window, *before* any hashing or database work (so refusing costs nothing). The account itself is
never locked: the real user on another computer signs in as usual, whatever someone elsewhere
types. A success clears that address's count for that name. An admin is never locked out: the
CLI (``interface users passwd``) works on the database directly.

**Directory users** (:mod:`interface.desk.directory`, when ``directory.yaml`` is there): a name
that is a *local* user's signs in with its local password only, and the directory is never asked
(local accounts win for their own names, in any case: ``Admin`` is not a directory name when
``admin`` is a local user; the break-glass admin signs in when the directory is down). Any other
name is bound in the directory and its local record is named in lower case (:func:`check_password` returns a
:class:`DirectoryChecked`; :func:`interface.web.auth.login` then creates or updates the local
record, :func:`interface.desk.users.sync_directory_user`). The limits above apply the same.

The client address is the TCP peer's (``request.client``); behind a reverse proxy every client
has the proxy's address, so the per-address limit applies to all of them together (a proxy
should do its own limiting). The counts live in the serving process: ``interface run`` serves the
console from one process (with ``--workers N`` from the first), ``interface web`` has its own.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from limits import parse_many
from limits.storage import MemoryStorage
from limits.storage import memory as _limits_clock  # its ``time``: the clock the windows use
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func

from interface.desk import users as usermod
from interface.desk.directory import OK, Answer, Directory, DirectoryDown
from interface.desk.users import User, users

__all__ = ["Answer", "DirectoryDown"]  # re-exported for interface.web.auth

PER_NAME_AND_ADDRESS = "5/15 minutes;20/day"
PER_ADDRESS = "30/15 minutes"
HASH_SLOTS = 2
HASH_WAIT_SECONDS = 10.0


class Limiter:
    """Failed sign-ins per (address, name) and per address, in moving windows."""

    def __init__(self, per_name_and_address: str = PER_NAME_AND_ADDRESS, per_address: str = PER_ADDRESS):
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._pair = parse_many(per_name_and_address)
        self._address = parse_many(per_address)

    def _checks(self, address: str, name: str):
        name = name.casefold()
        for item in self._pair:
            yield item, ("signin-pair", address, name)
        for item in self._address:
            yield item, ("signin-address", address)

    def retry_after(self, address: str, name: str) -> int | None:
        """Seconds until this source may try this name again, or None if it may now."""
        wait = None
        for item, ids in self._checks(address, name):
            if not self._limiter.test(item, *ids):
                stats = self._limiter.get_window_stats(item, *ids)
                seconds = max(1, math.ceil(stats.reset_time - _limits_clock.time.time()))
                wait = max(wait or 0, seconds)
        return wait

    def failed(self, address: str, name: str) -> bool:
        """Count a failed sign-in; True if it used up a limit (the next try will be refused)."""
        tripped = False
        for item, ids in self._checks(address, name):
            self._limiter.hit(item, *ids)
            if not self._limiter.test(item, *ids):
                tripped = True
        return tripped

    def succeeded(self, address: str, name: str) -> None:
        """The right password: forget this source's failures for this name."""
        for item in self._pair:
            self._limiter.clear(item, "signin-pair", address, name.casefold())


_slots = threading.BoundedSemaphore(HASH_SLOTS)


class Busy(Exception):
    """Too many password checks are waiting already (answered 503)."""


@dataclass(frozen=True)
class Checked:
    """A password that matched: the user, the hash it matched, and a new hash when the stored one
    uses old argon2 parameters (to store in the session's transaction)."""

    user: User
    password_hash: str
    rehashed: str | None


@dataclass(frozen=True)
class DirectoryChecked:
    """What the directory said about a name that is not a local user's (the local record is
    brought in line with it in the session's transaction)."""

    name: str
    answer: Answer

    @property
    def ok(self) -> bool:
        return self.answer.outcome == OK


def check_password(
    reader, name: str, password: str, directory: Directory | None = None
) -> Checked | DirectoryChecked | None:
    """The user if ``name`` is an enabled local user whose password is ``password``; what the
    directory says if there is a ``directory`` and the name is not a local user's
    (:class:`DirectoryChecked`; DirectoryDown when it cannot be reached); else None. Reads
    through ``reader`` and gives its connection back before hashing or asking the directory; no
    transaction is open meanwhile. An unknown name costs the same hash (no user-name oracle by
    timing)."""
    with reader.connect() as conn:
        if directory is not None:  # names differing only in case are one name in a directory
            alike = conn.execute(users.select().where(func.lower(users.c.name) == name.lower())).all()
        row = conn.execute(users.select().where(users.c.name == name)).first()
        conn.rollback()
    if directory is not None and not any(r.source != usermod.DIRECTORY for r in alike):
        return DirectoryChecked(name.lower(), directory.authenticate(name, password))
    if not _slots.acquire(timeout=HASH_WAIT_SECONDS):
        raise Busy()
    try:
        if row is None or row.source == usermod.DIRECTORY:  # (a directory user, no directory set up)
            usermod.dummy_verify(password)
            return None
        if not usermod.verify_password(row.password_hash, password) or row.disabled:
            return None
        rehashed = usermod.hash_password(password) if usermod.needs_rehash(row.password_hash) else None
    finally:
        _slots.release()
    return Checked(User(row.id, row.name, row.role), row.password_hash, rehashed)


def is_user(reader, name: str) -> bool:
    """Whether ``name`` is a user's name (a failed sign-in's audit row names only real users: a
    password typed into the name field must not land in the audit trail)."""
    with reader.connect() as conn:
        found = conn.execute(users.select().with_only_columns(users.c.id).where(users.c.name == name)).first()
        conn.rollback()
    return found is not None
