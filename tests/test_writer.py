"""interface.engine.writer: the journal writer's group commit, and its gathering while the SQLite write
lock is taken elsewhere (another engine process, the worker, the web console)."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from sqlalchemy import select

from interface.engine.writer import GroupCommitWriter
from interface.store import db as dbmod
from interface.store.schema import messages

from .test_destinations import Rig, adt, channel


def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "never got there"
        threading.Event().wait(0.001)


class _Answers:
    """Outcomes as the reactor would get them (here on the writer's thread), by control id."""

    def __init__(self):
        self.by_cid: dict[str, object] = {}
        self.failures: list = []
        self._lock = threading.Lock()

    def watch(self, d) -> None:
        d.addCallbacks(self._got, self.failures.append)

    def _got(self, outcome) -> None:
        with self._lock:
            self.by_cid[outcome.control_id] = outcome


def _rig(tmp_path, **kw):
    db = dbmod.make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    dbmod.create_schema(db)
    rig = Rig(db, channel())
    writer = GroupCommitWriter(rig.engine, lambda f, *a: f(*a), faults={}, **kw)
    return db, rig, writer


def _started_behind_the_lock(tmp_path, **kw):
    """A writer started while another connection (``other``) holds the write lock."""
    db, rig, writer = _rig(tmp_path, **kw)
    lock = dbmod.write_lock_of(db)
    other = object()
    lock.acquire(other)
    answers = _Answers()
    writer.start()
    return db, rig, writer, lock, other, answers


def _submit(rig, writer, answers, cid: str, mrn: str) -> None:
    from interface.engine.outcome import Inbound

    answers.watch(writer.submit(Inbound(rig.ch, adt(cid, mrn, "A01"), "peer")))


def _journalled(db) -> int:
    """Messages committed, read on a plain sqlite3 connection: a WAL reader, which (unlike the
    engine's connections, see db.WriteLock) never queues for the write lock the test holds."""
    import sqlite3

    conn = sqlite3.connect(db.url.database)
    try:
        return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def test_frames_arriving_while_the_lock_is_taken_join_the_group(tmp_path):
    """Another connection holds the write lock: the writer prepares its first frame, waits, and
    the frames that arrive meanwhile are prepared into the same group — one commit for all."""
    db, rig, writer, lock, other, answers = _started_behind_the_lock(tmp_path)
    try:
        _submit(rig, writer, answers, "C1", "M1")
        _until(lambda: len(lock._waiters) == 1)  # the writer's waiter queued behind `other`
        _submit(rig, writer, answers, "C2", "M2")
        _submit(rig, writer, answers, "C3", "M3")
        _until(lambda: writer.gathered == 2)
        assert not answers.by_cid and _journalled(db) == 0  # nothing committed or answered yet
        lock.release(other)
        _until(lambda: len(answers.by_cid) == 3)
    finally:
        writer.stop()
    assert writer.batches == 1  # one transaction, one fsync for the three
    assert {c: (o.status, o.ack_code) for c, o in answers.by_cid.items()} == {
        c: ("processed", "AA") for c in ("C1", "C2", "C3")
    }
    assert _journalled(db) == 3
    assert rig.status("store") == {"C1": "done", "C2": "done", "C3": "done"}
    lock.acquire(other)  # the writer gave the lock up at its COMMIT
    lock.release(other)
    db.dispose()


def test_another_processs_lock_is_waited_for_the_same_way(tmp_path):
    """The lock held by another process (an flock on another descriptor): the writer's first
    try fails without blocking, the waiter blocks in flock, and the group grows meanwhile."""
    db, rig, writer = _rig(tmp_path)
    lock = dbmod.write_lock_of(db)
    fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    answers = _Answers()
    writer.start()
    try:
        _submit(rig, writer, answers, "C1", "M1")
        _until(lambda: lock._holder is not None)  # the waiter got the in-process lock, blocks in flock
        _submit(rig, writer, answers, "C2", "M2")
        _until(lambda: writer.gathered == 1)
        assert _journalled(db) == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        _until(lambda: len(answers.by_cid) == 2)
    finally:
        writer.stop()
        os.close(fd)
    assert writer.batches == 1
    assert {o.status for o in answers.by_cid.values()} == {"processed"}
    db.dispose()


def test_the_group_stays_within_max_batch_and_the_rest_comes_next(tmp_path):
    db, rig, writer, lock, other, answers = _started_behind_the_lock(tmp_path, max_batch=2)
    try:
        _submit(rig, writer, answers, "C1", "M1")
        _until(lambda: len(lock._waiters) == 1)
        for cid in ("C2", "C3", "C4"):
            _submit(rig, writer, answers, cid, cid.replace("C", "M"))
        _until(lambda: writer.gathered == 1 and len(writer._carry) == 2)  # C2 joined; C3, C4 wait
        lock.release(other)
        _until(lambda: len(answers.by_cid) == 4)
    finally:
        writer.stop()
    assert writer.batches == 2  # [C1, C2], then [C3, C4]
    assert {o.status for o in answers.by_cid.values()} == {"processed"}
    assert _journalled(db) == 4
    db.dispose()


def test_a_lock_never_granted_fails_the_group_and_keeps_nothing(tmp_path):
    """The lock's timeout: the senders get the 'not accepted, please resend' AE, nothing is
    journalled, and the writer holds no lock afterwards."""
    db, rig, writer = _rig(tmp_path)
    lock = dbmod.write_lock_of(db)
    lock.timeout = 0.2
    other = object()
    lock.acquire(other)
    answers = _Answers()
    writer.start()
    try:
        _submit(rig, writer, answers, "C1", "M1")
        _until(lambda: len(answers.by_cid) == 1)
        out = answers.by_cid["C1"]
        assert (out.status, out.ack_code) == ("error", "AE") and b"ERR|" in out.ack
        lock.release(other)
        _submit(rig, writer, answers, "C2", "M2")  # the writer goes on once the lock is free
        _until(lambda: len(answers.by_cid) == 2)
    finally:
        writer.stop()
    assert answers.by_cid["C2"].status == "processed"
    with db.connect() as conn:
        assert [r.control_id for r in conn.execute(select(messages.c.control_id))] == ["C2"]
    assert lock._holder is None
    db.dispose()


def test_stop_while_waiting_still_answers_every_frame(tmp_path):
    db, rig, writer, lock, other, answers = _started_behind_the_lock(tmp_path, max_batch=1)
    _submit(rig, writer, answers, "C1", "M1")
    _until(lambda: len(lock._waiters) == 1)
    _submit(rig, writer, answers, "C2", "M2")  # over max_batch: set aside for the next group
    _until(lambda: len(writer._carry) == 1)
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    lock.release(other)
    stopper.join(10)
    assert not stopper.is_alive()
    assert sorted(answers.by_cid) == ["C1", "C2"] and not answers.failures
    assert _journalled(db) == 2
    db.dispose()


def test_without_a_write_lock_the_writer_commits_at_once(engine):
    """PostgreSQL (no write lock of ours) or SQLite with the lock free: no waiting, no gathering."""
    rig = Rig(engine, channel())
    writer = GroupCommitWriter(rig.engine, lambda f, *a: f(*a), faults={})
    answers = _Answers()
    writer.start()
    try:
        for i in range(5):
            _submit(rig, writer, answers, f"C{i}", f"M{i}")
        _until(lambda: len(answers.by_cid) == 5)
    finally:
        writer.stop()
    assert writer.gathered == 0
    assert {o.status for o in answers.by_cid.values()} == {"processed"}
    assert (dbmod.write_lock_of(engine) is None) == (engine.dialect.name != "sqlite")
