"""Console sign-in: no hashing under a transaction or the write lock, limits per source (never a
lock of the account), audit rows that never keep a mistyped password."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from interface.desk import signin, users
from interface.store import db as dbmod
from interface.store.schema import audit
from tests.test_auth import login
from tests.test_web_api import (  # noqa: F401  (fixtures)
    NOW,
    PASSWORD,
    TestClient,
    app,
    channels,
    clock,
    fast_hashing,
    h,
    make_user,
    tokens,
)

ATTACKER = ("10.0.0.66", 40000)
REAL_USER = ("10.0.0.7", 40001)


class _LimitsTime:
    """``time`` for the ``limits`` package, read from the test's clock."""

    def __init__(self, clock):
        self.clock = clock

    def time(self) -> float:
        return self.clock().timestamp()


@pytest.fixture(autouse=True)
def limits_clock(monkeypatch, clock):
    """The limiter's windows move with the injected clock, not the wall clock."""
    import limits.storage.memory
    import limits.strategies

    fake = _LimitsTime(clock)
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(limits.strategies, "time", fake)


def client_from(app, address):
    return TestClient(app, base_url="http://testserver", client=address)


class Watching:
    """A password hasher that records, at every hash and verification, whether a database
    connection was checked out (a transaction could be open) or SQLite's write lock was held."""

    def __init__(self, inner, engine, reader):
        self.inner, self.engine, self.reader = inner, engine, reader
        self.calls: list[tuple[str, int, int, object]] = []

    def _note(self, what):
        lock = dbmod.write_lock_of(self.engine)
        self.calls.append(
            (
                what,
                self.engine.pool.checkedout(),
                self.reader.pool.checkedout(),
                lock._holder if lock is not None else None,
            )
        )

    def hash(self, password, **kw):
        self._note("hash")
        return self.inner.hash(password, **kw)

    def verify(self, hashed, password):
        self._note("verify")
        return self.inner.verify(hashed, password)

    def check_needs_rehash(self, hashed):
        return self.inner.check_needs_rehash(hashed)


@pytest.fixture
def watching(monkeypatch, engine, app):
    w = Watching(users._hasher, engine, app.state.reader)
    monkeypatch.setattr(users, "_hasher", w)
    return w


def audit_of(engine, action):
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(audit).where(audit.c.action == action).order_by(audit.c.id))
        ]


def test_no_transaction_or_write_lock_while_hashing(app, engine, watching, tokens):
    """Right password, wrong password, unknown name, an admin's new user and new password: every
    argon2 hash and verification runs with no connection checked out and the write lock free."""
    make_user(engine, "ann", "clerk")
    watching.calls.clear()
    with client_from(app, REAL_USER) as c:
        assert login(c, "ann", "wrong password!").status_code == 401
        assert login(c, "nobody", PASSWORD).status_code == 401
        assert login(c, "ann").status_code == 303
    with TestClient(app) as c:
        admin = h(tokens["admin"])
        assert (
            c.post(
                "/api/users", headers=admin, json={"name": "bob", "role": "clerk", "password": PASSWORD}
            ).status_code
            == 201
        )
        assert (
            c.post(
                "/api/users/bob/password", headers=admin, json={"password": "another long passphrase"}
            ).status_code
            == 200
        )
    kinds = [k for k, *_ in watching.calls]
    assert kinds.count("verify") >= 3 and kinds.count("hash") >= 2, kinds
    assert all(
        engine_out == 0 and reader_out == 0 and holder is None
        for _k, engine_out, reader_out, holder in watching.calls
    ), watching.calls


def test_many_failures_from_one_address_do_not_stop_the_real_user(app, engine, clock):
    """50 wrong passwords for the admin from one address: that address is refused (429, with
    Retry-After) after 5; the admin signs in from another address at once, and the attacker's
    address too once its window has passed."""
    make_user(engine, "root", "admin")
    with client_from(app, ATTACKER) as bad:
        codes = [login(bad, "root", f"guess number {i}").status_code for i in range(50)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        refused = login(bad, "root")  # even the right password, from there, for now
        assert refused.status_code == 429 and "interface_session" not in refused.headers.get("set-cookie", "")
        assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    with client_from(app, REAL_USER) as good:
        r = login(good, "root")
        assert r.status_code == 303 and "interface_session=" in r.headers["set-cookie"]
    clock.advance(minutes=15, seconds=1)
    with client_from(app, ATTACKER) as bad:
        assert login(bad, "root").status_code == 303


def test_refused_attempts_cost_no_hash_and_no_write(app, engine, watching):
    """A source over its limit is refused before any password hash or database write; the audit
    trail gets one ``login_limited`` row when the limit is reached, not one per refused try."""
    make_user(engine, "ann", "clerk")
    with client_from(app, ATTACKER) as bad:
        for _ in range(5):
            assert login(bad, "ann", "wrong password!").status_code == 401
        calls, failed = len(watching.calls), len(audit_of(engine, "login_failed"))
        for _ in range(20):
            assert login(bad, "ann", "wrong password!").status_code == 429
    assert len(watching.calls) == calls and len(audit_of(engine, "login_failed")) == failed == 5
    limited = audit_of(engine, "login_limited")
    assert len(limited) == 1 and limited[0]["target_id"] == "ann"
    assert '"from": "10.0.0.66"' in limited[0]["detail"]


def test_password_spraying_from_one_address_is_limited(app, engine):
    """30 failed sign-ins over 30 different names from one address stop that address for any
    name; another address is unaffected."""
    make_user(engine, "ann", "clerk")
    with client_from(app, ATTACKER) as bad:
        assert {login(bad, f"user{i}", "wrong password!").status_code for i in range(30)} == {401}
        assert login(bad, "ann").status_code == 429
    with client_from(app, REAL_USER) as good:
        assert login(good, "ann").status_code == 303


def test_back_off_grows_to_a_day_for_a_persistent_source(app, engine, clock):
    """After 20 failures in a day from one address for one name, that pair waits for the day
    window, even when each 15-minute window has passed."""
    make_user(engine, "ann", "clerk")
    with client_from(app, ATTACKER) as bad:
        for _round in range(4):
            for _ in range(5):
                assert login(bad, "ann", "wrong password!").status_code == 401
            clock.advance(minutes=16)
        r = login(bad, "ann")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 20 * 3600
        clock.advance(hours=24)
        assert login(bad, "ann").status_code == 303


def test_a_success_clears_the_sources_count(app, engine):
    """Four typos, the right password, four more typos: never refused."""
    make_user(engine, "ann", "clerk")
    with client_from(app, REAL_USER) as c:
        for _ in range(4):
            assert login(c, "ann", "wrong password!").status_code == 401
        assert login(c, "ann").status_code == 303
        for _ in range(4):
            assert login(c, "ann", "wrong password!").status_code == 401
        assert login(c, "ann").status_code == 303


def test_failed_sign_in_names_only_real_users(app, engine):
    """A failed sign-in's audit row names the user only if the name is a user's: a password typed
    into the name field never lands in the audit trail."""
    make_user(engine, "ann", "clerk")
    typed = "Tr0ub4dor&3-secret"
    with client_from(app, REAL_USER) as c:
        assert login(c, typed, "ann").status_code == 401
        assert login(c, "ann", "wrong password!").status_code == 401
    rows = audit_of(engine, "login_failed")
    assert [(r["user"], r["target_id"]) for r in rows] == [("-", None), ("ann", "ann")]
    with engine.connect() as conn:
        every = " ".join(str(v) for row in conn.execute(select(audit)) for v in row)
    assert typed not in every


def test_a_password_changed_during_the_check_wins(app, engine, monkeypatch):
    """The session is written only if the password hash verified is still the user's: a new
    password set between the check and the session's transaction refuses the old one."""
    make_user(engine, "ann", "clerk")
    real = signin.check_password

    def racing(reader, name, password, directory=None):
        out = real(reader, name, password, directory)
        with engine.begin() as conn:
            users.set_password(conn, "ann", "another long passphrase", now=NOW)
        return out

    monkeypatch.setattr(signin, "check_password", racing)
    with client_from(app, REAL_USER) as c:
        assert login(c, "ann").status_code == 401
        assert c.get("/api/me").status_code == 401


def test_busy_when_every_hash_slot_is_taken(app, engine, monkeypatch):
    """When every password-check slot stays taken, a sign-in is answered 503 (try again) rather
    than queueing without bound."""
    import threading

    make_user(engine, "ann", "clerk")
    monkeypatch.setattr(signin, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(signin, "HASH_WAIT_SECONDS", 0.0)
    signin._slots.acquire()
    with client_from(app, REAL_USER) as c:
        r = login(c, "ann")
    assert r.status_code == 503 and "busy" in r.text
    signin._slots.release()
    with client_from(app, REAL_USER) as c:
        assert login(c, "ann").status_code == 303


def test_limits_count_case_variants_of_a_name_together(app, engine):
    """``Ann``, ``ANN`` and ``ann`` share one count, so changing case does not buy more guesses."""
    make_user(engine, "ann", "clerk")
    with client_from(app, ATTACKER) as bad:
        codes = [
            login(bad, n, "wrong password!").status_code for n in ("ann", "Ann", "ANN", "aNn", "anN", "ANn")
        ]
    assert codes == [401] * 5 + [429]
