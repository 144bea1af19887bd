"""/api/health says ``degraded`` (503) and why when journal commits fail (disk full, database
read-only) or the database cannot take writes, and ``ok`` again once a commit succeeds."""

from __future__ import annotations

import sqlite3
from collections import namedtuple

import pytest
from sqlalchemy import event, text

from interface.engine.inbound import Engine
from interface.store import health
from interface.web.api import health as api_health
from tests.test_web_api import adt, app, channels, client, clock, fast_hashing  # noqa: F401  (fixture)  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def fresh_recorder():
    health.record_commit_ok()
    yield
    health.record_commit_ok()


def adt_channel(channels):
    return next(c for c in channels if c.name == "adt")


class _ReadOnlyPostgres:
    """New connections to the test's PostgreSQL database start read-only transactions (as on a
    standby) until ``undo``."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.url.database

    def __enter__(self):
        with self.engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on'))
            conn.commit()
        self.engine.dispose()
        return self

    def __exit__(self, *exc):
        with self.engine.connect() as conn:
            conn.execute(text("SET TRANSACTION READ WRITE"))  # first in its transaction: allowed
            conn.execute(text(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only'))
            conn.commit()
        self.engine.dispose()


def _full_sqlite(engine):
    """Every new connection of this SQLite engine may not grow the file: the next commit that
    needs a page fails with SQLITE_FULL, "database or disk is full" (a real disk-full error)."""

    def limit(dbapi_conn, _record):
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", limit)
    engine.dispose()
    return limit


def test_failing_commits_make_health_degraded_with_the_reason(client, engine, channels, clock):
    """A journal commit that fails (SQLite: disk full; PostgreSQL: read-only database) is answered
    AE "please resend", and /api/health says 503 degraded with the reason; the next commit that
    succeeds makes it ok again."""
    eng = Engine(engine, clock=clock)
    ch = adt_channel(channels)
    assert client.get("/api/health").status_code == 200
    if engine.dialect.name == "sqlite":
        limit = _full_sqlite(engine)
        big = adt("FULL1", "4000001").replace(
            b"PV1|1|I|W1^101^A\r", b"NTE|1||" + b"x" * 200_000 + b"\rPV1|1|I\r"
        )
        out = eng.receive(ch, big)
        expected = "disk full"
    else:
        with _ReadOnlyPostgres(engine):
            out = eng.receive(ch, adt("RO1", "4000001"))
            r = client.get("/api/health")
            assert "database read-only" in r.json()["reasons"]  # the probe sees it too, while it lasts
        expected = "database read-only"
    assert out.status == "error" and b"MSA|AE|" in out.ack
    r = client.get("/api/health")
    assert r.status_code == 503 and r.json()["status"] == "degraded" and r.json()["database"] == "ok"
    assert any(
        reason.startswith("journal commits failing since ") and reason.endswith(expected)
        for reason in r.json()["reasons"]
    ), r.json()
    if engine.dialect.name == "sqlite":
        event.remove(engine, "connect", limit)
        engine.dispose()
    out = eng.receive(ch, adt("OK1", "4000002"))
    assert out.status == "accepted"
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "reasons": []}


def test_a_database_that_cannot_take_writes_is_degraded(client, engine, monkeypatch):
    """Before any commit fails: SQLite with less than 64 MiB free on the database's disk, or a
    PostgreSQL whose new transactions are read-only, is 503 degraded with the reason."""
    if engine.dialect.name == "sqlite":
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(
            api_health, "disk_usage", lambda _path: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20)
        )
        r = client.get("/api/health")
        assert r.status_code == 503 and r.json()["reasons"] == ["disk nearly full (5 MiB free)"]
    else:
        with _ReadOnlyPostgres(engine):
            r = client.get("/api/health")
        assert r.status_code == 503 and r.json()["reasons"] == ["database read-only"]
    monkeypatch.undo()
    assert client.get("/api/health").status_code == 200


def test_reasons_are_fixed_words_never_the_database_message(tmp_path):
    """Why a commit failed is said from the kind of error (real SQLite errors here), never with
    the error's own text, which can quote values."""
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (v TEXT)").connection.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES ('MRN 100001')")
    ro.close()
    assert health.describe(readonly.value) == "database read-only"
    full = sqlite3.connect(path)
    full.execute(f"PRAGMA max_page_count = {full.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError) as disk_full:
        full.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    full.close()
    assert health.describe(disk_full.value) == "disk full"

    class Odd(Exception):
        pass

    assert health.describe(Odd("patient DOE^JANE 100001")) == "commit failed (Odd)"


def test_recorder_keeps_the_first_failure_time():
    """``since`` is the first failure of a run of failures; a success ends the run."""
    from datetime import datetime, timezone

    t0 = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)
    health.record_commit_failure("disk full", now=t0)
    health.record_commit_failure("database read-only", now=t0.replace(hour=9))
    assert health.commit_failure() == (t0, "database read-only")
    health.record_commit_ok()
    assert health.commit_failure() is None
