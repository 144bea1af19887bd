"""interface.store.fastsql (hot-path statements on the DBAPI cursor) and db.WriteLock (SQLite's write
lock queued in the process and across processes). Run on SQLite and, with
INTERFACE_TEST_DB_URL, on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from interface.store import chart_schema as cs
from interface.store import db as dbmod
from interface.store import fastsql

T = cs.patients
NOW = datetime(2026, 11, 23, 12, 30, 15, 250000, tzinfo=timezone.utc)

INSERT_ROW = fastsql.Statement(insert(T).returning(*T.c), keyed=True)
INSERT_ID = fastsql.Statement(insert(T).returning(T.c.id), keyed=True)
INSERT_MANY = fastsql.Statement(insert(T), keyed=True)
BY_MRN = fastsql.Statement(select(T).where(T.c.mrn == bindparam("b_mrn")))
UPDATE = fastsql.Statement(update(T).where(T.c.id == bindparam("b_id")).returning(*T.c), keyed=True)
BY_SEX = fastsql.Statement(select(T.c.mrn).where(T.c.sex == "F").order_by(T.c.mrn))


def _patient(mrn, **kw):
    return dict(mrn=mrn, created_at=NOW, updated_at=NOW, message_id=None, last_event="A04", **kw)


def test_rows_match_what_sqlalchemy_returns(engine):
    with engine.begin() as conn:
        row = fastsql.run(conn, INSERT_ROW, _patient("M1", family="DOE", sex="F")).one()
        fastsql.run_many(conn, INSERT_MANY, [_patient("M2", sex="F"), _patient("M3", sex="M")])
        fast = fastsql.run(conn, BY_MRN, {"b_mrn": "M1"}).first()
        slow = conn.execute(BY_MRN.stmt, {"b_mrn": "M1"}).first()
        assert fast._mapping == dict(slow._mapping) == row._mapping
        assert fast.family == "DOE" and fast.id == row.id and fast.created_at == slow.created_at
        assert isinstance(fast.created_at, datetime)
        assert [r.mrn for r in fastsql.run(conn, BY_SEX)] == ["M1", "M2"]  # literal bind kept
        assert fastsql.run(conn, BY_MRN, {"b_mrn": "nobody"}).first() is None
        rid = fastsql.run(conn, INSERT_ID, _patient("M4")).scalar()
        assert conn.execute(select(T.c.mrn).where(T.c.id == rid)).scalar() == "M4"
        res = fastsql.run(conn, UPDATE, {"b_id": row.id, "family": "ROE", "updated_at": NOW})
        assert res.rowcount == 1 and res.one().family == "ROE"
        with pytest.raises(AttributeError):
            fast.no_such_column
        with pytest.raises(KeyError, match="b_mrn"):
            fastsql.run(conn, BY_MRN, {})


def test_statements_run_in_the_callers_transaction(engine):
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            fastsql.run(conn, INSERT_ROW, _patient("GONE"))
            raise RuntimeError("roll back")
    with engine.begin() as conn:
        sp = fastsql.Savepoint(conn)
        fastsql.run(conn, INSERT_ROW, _patient("IN-SAVEPOINT"))
        sp.rollback()
        sp = fastsql.Savepoint(conn)
        fastsql.run(conn, INSERT_ROW, _patient("KEPT"))
        sp.commit()
    with engine.connect() as conn:
        assert [r.mrn for r in conn.execute(select(T.c.mrn))] == ["KEPT"]


def test_dbapi_errors_are_sqlalchemy_errors(engine):
    """Callers (the worker) tell a database failure from a bug by SQLAlchemy's exceptions."""
    with engine.begin() as conn:
        fastsql.run(conn, INSERT_ROW, _patient("DUP"))
        sp = fastsql.Savepoint(conn)
        with pytest.raises(IntegrityError):
            fastsql.run(conn, INSERT_ROW, _patient("DUP"))
        sp.rollback()  # the transaction is usable again (PostgreSQL: no longer aborted)
        assert fastsql.run(conn, BY_MRN, {"b_mrn": "DUP"}).one().mrn == "DUP"


def test_cursor_listeners_see_every_statement(engine):
    """Fault injection and statement counting hook ``before_cursor_execute``: with a listener
    installed, statements go through Connection.execute."""
    seen = []

    def hook(conn, cursor, statement, *a):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", hook)
    try:
        with engine.begin() as conn:
            fastsql.run(conn, INSERT_ROW, _patient("SEEN"))
            sp = fastsql.Savepoint(conn)
            fastsql.run(conn, BY_MRN, {"b_mrn": "SEEN"})
            sp.commit()
    finally:
        event.remove(engine, "before_cursor_execute", hook)
    assert any(s.startswith("INSERT INTO patients") for s in seen)
    assert any(s.startswith("SAVEPOINT") for s in seen)


def test_outside_a_transaction_falls_back(engine):
    with engine.connect() as conn:  # no transaction begun yet: Connection.execute autobegins
        assert fastsql.run(conn, BY_MRN, {"b_mrn": "x"}).first() is None


def test_expanding_in_is_refused_at_compile_time(engine):
    st = fastsql.Statement(select(T.c.id).where(T.c.mrn.in_(["a", "b"])))
    with engine.begin() as conn:
        with pytest.raises(TypeError, match="expanding IN"):
            fastsql.run(conn, st)


# -- the SQLite write lock -------------------------------------------------------------------------


def _until(cond, timeout: float = 5.0) -> None:
    """Wait for another thread to reach a state (bounded: a broken lock fails, never hangs)."""
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the other thread never got there"
        threading.Event().wait(0.001)


def test_write_lock_hands_over_in_arrival_order(tmp_path):
    lock = dbmod.WriteLock(str(tmp_path / "x.db"))
    a, b, c = object(), object(), object()
    order = []
    lock.acquire(a)

    def take(who, name):
        lock.acquire(who)
        order.append(name)
        lock.release(who)

    tb = threading.Thread(target=take, args=(b, "b"))
    tb.start()
    _until(lambda: len(lock._waiters) == 1)  # b queued
    tc = threading.Thread(target=take, args=(c, "c"))
    tc.start()
    _until(lambda: len(lock._waiters) == 2)  # then c
    lock.acquire(a)  # re-entrant for its holder
    lock.release(object())  # not the holder: no effect
    assert order == []
    lock.release(a)
    tb.join(5)
    tc.join(5)
    assert not tb.is_alive() and not tc.is_alive()
    assert order == ["b", "c"]
    assert lock._holder is None


def test_write_lock_gives_up_after_its_timeout(tmp_path):
    lock = dbmod.WriteLock(str(tmp_path / "y.db"))
    lock.timeout = 0.05
    holder, other = object(), object()
    lock.acquire(holder)
    with pytest.raises(Exception, match="locked"):
        lock.acquire(other)
    assert not lock._waiters
    lock.release(holder)
    lock.acquire(other)  # free again
    lock.release(other)


def test_sqlite_writers_queue_instead_of_sleeping(tmp_path):
    """Two engines (as two processes would) on one file: the second writer waits for the
    first's COMMIT and then proceeds; nothing fails with 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    e1, e2 = dbmod.make_engine(url), dbmod.make_engine(url)
    dbmod.create_schema(e1)
    started, done = threading.Event(), []

    def second():
        started.set()
        with e2.begin() as c:
            fastsql.run(c, INSERT_ROW, _patient("SECOND"))
        done.append(True)

    with e1.begin() as c:
        fastsql.run(c, INSERT_ROW, _patient("FIRST"))
        t = threading.Thread(target=second)
        t.start()
        started.wait(5)
        t.join(0.2)
        assert not done  # still queued behind our transaction
    t.join(10)
    assert done
    with e1.connect() as c:
        assert sorted(r.mrn for r in c.execute(select(T.c.mrn))) == ["FIRST", "SECOND"]
    with pytest.raises(OperationalError):
        with e1.begin() as c:
            c.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
    with e2.begin() as c:  # the failed transaction gave the lock back
        fastsql.run(c, INSERT_ROW, _patient("THIRD"))
    e1.dispose()
    e2.dispose()


_WRITER = """
import sys
from sqlalchemy import text
from interface.store import db
eng = db.make_engine(sys.argv[1])
for i in range(int(sys.argv[3])):
    with eng.begin() as c:
        n = c.execute(text("SELECT COUNT(*) FROM t")).scalar()
        c.execute(text("INSERT INTO t (who, seen) VALUES (:w, :n)"), {"w": sys.argv[2], "n": n})
"""


def test_sqlite_write_lock_across_processes(tmp_path):
    """Three processes writing one file through make_engine: every transaction gets in, none
    sees 'database is locked', and each saw all rows committed before it (serialised)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'p.db'}"
    eng = dbmod.make_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, seen INTEGER)")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, f"w{i}", "60"], stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with eng.connect() as c:
        seen = [r[0] for r in c.exec_driver_sql("SELECT seen FROM t ORDER BY id")]
    assert seen == list(range(180))  # each insert counted exactly the rows before it
    eng.dispose()


def test_write_lock_gives_up_on_another_process_after_its_timeout(tmp_path):
    """Another process's flock (here: another descriptor, which flock treats the same way) is
    waited for, but not forever."""
    import fcntl
    import os

    lock = dbmod.WriteLock(str(tmp_path / "z.db"))
    lock.timeout = 0.05
    other = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    me = object()
    with pytest.raises(Exception, match="another process holds"):
        lock.acquire(me)
    assert lock._holder is None  # the in-process lock was given back
    fcntl.flock(other, fcntl.LOCK_UN)
    lock.acquire(me)  # free now
    lock.release(me)
    os.close(other)


# -- durability: the WAL is synced after the lock is given up, before COMMIT returns ----------------


def test_commit_syncs_the_wal_after_releasing_the_lock(tmp_path, monkeypatch):
    """db.WalSync: connections run synchronous=NORMAL and every COMMIT is followed by an fsync of
    the -wal file, made once the write lock is free and before the commit returns; a commit that
    returned is therefore on disk, as with synchronous=FULL."""
    import os

    path = tmp_path / "d.db"
    db = dbmod.make_engine(f"sqlite:///{path}")
    dbmod.create_schema(db)
    lock = dbmod.write_lock(str(path))
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), lock._holder))
        real_fsync(fd)

    monkeypatch.setattr(dbmod.os, "fsync", fsync)
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with db.begin() as conn:
        fastsql.run(conn, INSERT_ROW, _patient("W1"))
        assert synced == []  # nothing synced before COMMIT
    # by the time the commit has returned: the WAL was synced, with the lock already free
    wal = [holder for name, holder in synced if name == f"{path}-wal"]
    assert wal and all(h is None for h in wal), synced
    with db.connect() as conn:
        assert fastsql.run(conn, BY_MRN, {"b_mrn": "W1"}).one().mrn == "W1"
    db.dispose()


def test_rollback_does_not_sync(tmp_path, monkeypatch):
    import os

    path = tmp_path / "r.db"
    db = dbmod.make_engine(f"sqlite:///{path}")
    dbmod.create_schema(db)
    calls = []
    monkeypatch.setattr(dbmod.os, "fsync", lambda fd: calls.append(fd))
    with pytest.raises(RuntimeError):
        with db.begin() as conn:
            fastsql.run(conn, INSERT_ROW, _patient("R1"))
            raise RuntimeError("abort")
    assert calls == []
    db.dispose()


def test_a_failed_wal_fsync_is_a_failed_commit(tmp_path, monkeypatch):
    """fsync fails (EIO): the commit raises a database error, so nobody is told it is stored
    (the engine answers AE 207 "resend"; a resend that finds it stored gets the stored ACK)."""
    import errno

    path = tmp_path / "e.db"
    db = dbmod.make_engine(f"sqlite:///{path}")
    dbmod.create_schema(db)

    def fail(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(dbmod.os, "fsync", fail)
    with pytest.raises(OperationalError, match="fsync"):
        with db.begin() as conn:
            fastsql.run(conn, INSERT_ROW, _patient("E1"))
    monkeypatch.undo()
    with db.begin() as conn:  # the lock was given up: the next writer goes on
        fastsql.run(conn, INSERT_ROW, _patient("E2"))
    db.dispose()


def test_checkpoints_run_in_the_background_not_in_commits(tmp_path):
    """db.WalSync: engine connections leave the checkpoint to a background thread (SQLite's own
    automatic checkpoint is only a 64 MB safety net), which copies the WAL into the database
    every few commits without holding the write lock."""
    import sqlite3
    import time

    path = tmp_path / "c.db"
    db = dbmod.make_engine(f"sqlite:///{path}")
    dbmod.create_schema(db)
    wal = dbmod._SYNCS[str(path)]
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16384
    for i in range(3 * wal.checkpoint_every):
        with db.begin() as conn:
            fastsql.run(conn, INSERT_ROW, _patient(f"C{i}"))
    deadline = time.monotonic() + 10
    while wal.checkpoints == 0:
        assert time.monotonic() < deadline, "no background checkpoint ran"
        threading.Event().wait(0.01)
    # rows are in the database file itself, not only in the WAL (immutable=1 ignores the WAL)
    plain = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    assert plain.execute("SELECT count(*) FROM patients").fetchone()[0] >= 1
    plain.close()
    db.dispose()


def test_the_checkpoint_thread_ends_when_idle_and_comes_back(tmp_path):
    import time

    path = tmp_path / "i.db"
    db = dbmod.make_engine(f"sqlite:///{path}")
    dbmod.create_schema(db)
    wal = dbmod._SYNCS[str(path)]
    wal.idle_exit = 0.05

    def commits(n, tag):
        for i in range(n):
            with db.begin() as conn:
                fastsql.run(conn, INSERT_ROW, _patient(f"{tag}{i}"))

    def until(cond):
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, "the checkpoint thread never got there"
            threading.Event().wait(0.01)

    commits(wal.checkpoint_every, "A")
    until(lambda: wal.checkpoints >= 1)
    until(lambda: wal._wake is None)  # idle: the thread ended
    before = wal.checkpoints
    commits(wal.checkpoint_every, "B")
    until(lambda: wal.checkpoints > before)  # and a new one ran for the next commits
    db.dispose()
