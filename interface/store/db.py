"""Database engines: SQLite (embedded default) and PostgreSQL (production), set up for durability.

SQLite: WAL journal, a commit is on disk when it returns (see :class:`WalSync`), a busy timeout,
and ``BEGIN IMMEDIATE`` for every transaction so that two writers queue on the lock instead of
failing with SQLITE_BUSY when a read transaction upgrades. PostgreSQL: ``synchronous_commit=on``.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("interface.store.db")

DEFAULT_VAR = "var"


def default_url(var_dir: str | os.PathLike = DEFAULT_VAR) -> str:
    return f"sqlite:///{Path(var_dir) / 'interface.store.db'}"


def resolve_url(url: str | None = None, var_dir: str | os.PathLike = DEFAULT_VAR) -> str:
    """``--db`` beats ``INTERFACE_DB_URL`` beats ``./var/interface.store.db``."""
    return url or os.environ.get("INTERFACE_DB_URL") or default_url(var_dir)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class WriteLock:
    """SQLite's write lock, taken before ``BEGIN IMMEDIATE`` and given up after COMMIT/ROLLBACK.

    SQLite itself makes a second writer wait with its busy handler, which *sleeps* 1, 2, 5, 10,
    15, 20, 25... ms between attempts: the journal writer (every ACK) waiting behind a worker
    transaction of 15 ms slept 18 ms, and several engine processes on one file spent most of
    their time asleep. Here waiters queue instead and are woken the moment the lock is free:

    * in the process, a FIFO hand-off (the ACK path is never starved by a worker that commits
      and begins again at once);
    * across processes (``interface run --workers N``, the CLI), ``flock`` on
      ``<db>-writelock``: tried at once, else waited for in a blocking ``flock`` (woken by the
      kernel as soon as it is free, see :meth:`_flock`). Each connection has its own file
      descriptor; one lock per database file per process (keyed by its path).

    Both waits give up after ``timeout`` (60 s, SQLite's busy timeout) with SQLite's own
    "database is locked" error, so nothing hangs behind a stuck holder.

    SQLite's own lock stays underneath, unchanged (another program writing the file still gets
    the busy timeout). A connection is released only by itself (``release`` is idempotent).
    """

    timeout = 60.0  # as SQLite's busy timeout below

    def __init__(self, path: str):
        self.path = path + "-writelock"
        self._mutex = threading.Lock()
        self._waiters: collections.deque = collections.deque()
        self._holder: int | None = None
        self._fds: dict[int, int] = {}

    def _fd(self, conn_id: int) -> int:
        fd = self._fds.get(conn_id)
        if fd is None:
            fd = self._fds[conn_id] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def acquire(self, dbapi_conn) -> None:
        me = _conn_id(dbapi_conn)
        with self._mutex:
            if self._holder == me:
                return
            if self._holder is None and not self._waiters:
                self._holder = me
                ticket = None
            else:
                ticket = threading.Event()
                self._waiters.append((me, ticket))
        if ticket is not None and not ticket.wait(self.timeout):
            with self._mutex:  # gave up: unless it was handed over meanwhile
                if (me, ticket) in self._waiters:
                    self._waiters.remove((me, ticket))
                    raise sqlite3.OperationalError("database is locked (write lock wait timed out)")
        try:
            self._flock(self._fd(me))
        except BaseException:
            self._hand_over()
            raise

    def try_acquire(self, dbapi_conn) -> bool:
        """:meth:`acquire` if the lock is free in this process and in every other; else False
        at once, holding nothing (the journal writer then waits for it in a helper thread,
        gathering frames meanwhile: ``interface.engine.writer``)."""
        me = _conn_id(dbapi_conn)
        with self._mutex:
            if self._holder == me:
                return True
            if self._holder is not None or self._waiters:
                return False
            self._holder = me
        try:
            fcntl.flock(self._fd(me), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._hand_over()
            return False
        except BaseException:
            self._hand_over()
            raise

    def _flock(self, fd: int) -> None:
        """The cross-process lock: at once if free; else a helper thread blocks in ``flock``
        (the kernel wakes it the moment the holder unlocks, from any process) while this
        thread waits for it up to ``timeout``. A helper that gets the lock after its waiter
        gave up unlocks it at once. The helper works on a ``dup`` of the descriptor (the same
        open file, so the same lock), which it closes itself: closing the connection meanwhile
        cannot make it unlock a reused descriptor number.

        (Polling ``LOCK_NB`` every 0.1-1 ms, as before, left the lock idle for up to a
        millisecond at every hand-over between processes: with two engine processes on one
        file that was most of the time they spent waiting.)"""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        got = threading.Event()
        gate = threading.Lock()
        abandoned: list[bool] = []
        helper_fd = os.dup(fd)

        def block() -> None:
            try:
                fcntl.flock(helper_fd, fcntl.LOCK_EX)
                with gate:
                    if abandoned:
                        fcntl.flock(helper_fd, fcntl.LOCK_UN)
                    else:
                        got.set()
            finally:
                os.close(helper_fd)  # the lock stays: ``fd`` still holds the open file

        threading.Thread(target=block, name="writelock-wait", daemon=True).start()
        if got.wait(self.timeout):
            return
        with gate:
            if got.is_set():
                return
            abandoned.append(True)
        raise sqlite3.OperationalError("database is locked (another process holds the write lock)")

    def release(self, dbapi_conn) -> None:
        me = _conn_id(dbapi_conn)
        with self._mutex:
            if self._holder != me:
                return
            fd = self._fds.get(me)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._hand_over()

    def forget(self, dbapi_conn) -> None:
        """The connection is closed or thrown away: release, and close its descriptor."""
        self.release(dbapi_conn)
        with self._mutex:
            fd = self._fds.pop(_conn_id(dbapi_conn), None)
        if fd is not None:
            os.close(fd)

    def _hand_over(self) -> None:
        with self._mutex:
            if self._waiters:
                self._holder, ticket = self._waiters.popleft()
                ticket.set()
            else:
                self._holder = None


class WalSync:
    """Make a commit durable *after* giving the write lock up: ``fsync`` of the ``-wal`` file.

    With ``synchronous=FULL`` SQLite fsyncs the WAL inside COMMIT, while it still holds the
    write lock, so every other writer (the other engine processes, the worker) waits for the
    disk too: at the ADT benchmark's rate a group commit writes ~180 WAL pages and its fsync
    was the largest single part of the time the lock was held. Here the file's connections run
    with ``synchronous=NORMAL`` (COMMIT writes the WAL frames but does not sync them; SQLite
    still syncs the WAL before every checkpoint, the database after it, and the WAL header when
    the WAL restarts), and :func:`make_engine`'s commit hook calls :meth:`sync` after COMMIT
    and after the lock is released, before the commit returns. So a commit is on disk when it
    returns, exactly as with FULL — an ACK still only ever follows an fsync that covers its
    transaction's commit frame — while the next writer is already running; fsyncs of several
    writers overlap (the disk's own group commit). A power loss before our fsync loses the
    transaction, which nobody was told about yet; WAL frames are checksummed in a chain, so
    recovery keeps every transaction whose frames were synced and drops the rest.
    """

    checkpoint_every = 8  # commits between background checkpoints (see below)
    idle_exit = 60.0  # the checkpoint thread (and its connection) ends after this long idle

    def __init__(self, path: str):
        self.path = path + "-wal"
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._old: list[int] = []  # descriptors of WAL files since deleted: never closed under
        # a concurrent fsync (the WAL is only deleted when the last connection closes: rare)
        self.commits = 0
        self.checkpoints = 0  # background checkpoints run (tests, diagnostics)
        self._wake: threading.Event | None = None  # set: the checkpoint thread runs

    def _file(self) -> int | None:
        with self._mutex:
            fd = self._fd
            if fd is not None and os.fstat(fd).st_nlink > 0:
                return fd
            try:
                new = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                return None  # no WAL: everything was checkpointed (and synced) into the database
            if fd is not None:
                self._old.append(fd)
            self._fd = new
            dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
            try:
                os.fsync(dfd)  # the WAL file's directory entry, once per WAL file
            finally:
                os.close(dfd)
            return new

    def sync(self) -> None:
        fd = self._file()
        if fd is not None:
            os.fsync(fd)
        self.commits += 1
        if self.commits % self.checkpoint_every == 0:
            self._checkpoint_soon()

    # -- checkpoints, off the write lock -----------------------------------------------------
    #
    # SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages, so one
    # commit in five or six held the write lock for the copy and two more fsyncs (4-6 ms against
    # ~1.5 ms). Engine connections set ``wal_autocheckpoint`` to 16,384 pages (a safety net
    # only) and a thread of this process runs a PASSIVE checkpoint on its own connection every
    # ``checkpoint_every`` commits: PASSIVE never blocks writers or readers (it copies what no
    # reader still needs; the next writer restarts the WAL once all of it is copied), and a
    # checkpoint syncs the WAL before copying and the database after, as always.

    def _checkpoint_soon(self) -> None:
        with self._mutex:
            if self._wake is None:
                self._wake = threading.Event()
                threading.Thread(
                    target=self._checkpointer, args=(self._wake,), name="wal-checkpoint", daemon=True
                ).start()
            self._wake.set()

    def _checkpointer(self, wake: threading.Event) -> None:
        db_path = self.path[: -len("-wal")]
        conn = None
        while True:
            if not wake.wait(self.idle_exit):
                with self._mutex:
                    if not wake.is_set():  # idle: end; the next commit starts a new one
                        self._wake = None
                        break
                continue
            wake.clear()
            try:
                if conn is None:
                    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except sqlite3.Error as exc:  # busy (another process checkpoints), or gone: later
                log.debug("background checkpoint skipped: %s", exc)
                if conn is not None and not os.path.exists(db_path):
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()


_SYNCS: dict[str, WalSync] = {}


def _conn_id(conn) -> int:
    """The DBAPI connection's identity (the dialect is handed the pool's proxy of it)."""
    return id(getattr(conn, "dbapi_connection", None) or conn)


_LOCKS: dict[str, WriteLock] = {}
_LOCKS_MUTEX = threading.Lock()


def write_lock(path: str) -> WriteLock:
    """The process's write lock for this SQLite file."""
    key = os.path.abspath(path)
    with _LOCKS_MUTEX:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = WriteLock(key)
        return lock


def read_only_engine(engine: Engine, *, pooled: bool = True) -> tuple[Engine, bool]:
    """An engine for reads that must never wait for (or hold up) a writer, and whether it is a
    private one (to dispose of). On SQLite: a separate engine on the same file whose transactions
    begin with a deferred ``BEGIN`` — a WAL snapshot, no write lock — with ``PRAGMA
    query_only`` (a write through it fails loudly instead of slipping past the write lock);
    ``pooled``: a small pool (the web console), else a connection per use (the alert checks,
    every 30 s). On PostgreSQL, where reads never block writers, the engine itself.

    Why: every transaction of :func:`make_engine`'s SQLite engines takes the write lock first
    (``BEGIN IMMEDIATE``), reads included, so a slow console search would hold up the journal
    writer — every sender's ACK — for as long as it ran."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine, False
    kw = {"pool_size": 5, "max_overflow": 10} if pooled else {"poolclass": NullPool}
    reader = create_engine(
        engine.url, connect_args={"check_same_thread": False, "timeout": 60}, hide_parameters=True, **kw
    )

    @event.listens_for(reader, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        dbapi_conn.execute("PRAGMA query_only=ON")
        dbapi_conn.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(reader, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")

    return reader, True


def write_lock_of(engine: Engine) -> WriteLock | None:
    """The write lock :func:`make_engine` put in front of this SQLite file's ``BEGIN``, or
    None (PostgreSQL, or a private in-memory database: nothing to wait for)."""
    return getattr(engine, "_interface_write_lock", None)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=pool_size,
            max_overflow=20,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective in a new file (retention.reclaim)
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        if not path or path == ":memory:" or "///" not in url:  # private: nobody to queue behind

            @event.listens_for(engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        lock = write_lock(path)
        engine._interface_write_lock = lock
        key = os.path.abspath(path)
        with _LOCKS_MUTEX:
            wal = _SYNCS.setdefault(key, WalSync(key))

        @event.listens_for(engine, "connect")
        def _deferred_sync(dbapi_conn, _record):  # after _sqlite_pragmas: see WalSync
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=16384")  # a safety net: WalSync checkpoints

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            dbapi_conn = conn.connection.dbapi_connection
            lock.acquire(dbapi_conn)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                lock.release(dbapi_conn)
                raise

        # released once the COMMIT or ROLLBACK is done, or if the connection goes back to the
        # pool or is thrown away without either; a COMMIT then syncs the WAL before returning
        dialect = engine.dialect
        do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

        def _commit(dbapi_conn):
            try:
                do_commit(dbapi_conn)
            finally:
                lock.release(dbapi_conn)
            try:
                wal.sync()
            except OSError as exc:  # not known to be durable: the caller must not ACK it
                raise sqlite3.OperationalError(f"fsync of the WAL failed: {exc}") from exc

        def _rollback(dbapi_conn):
            try:
                do_rollback(dbapi_conn)
            finally:
                lock.release(dbapi_conn)

        dialect.do_commit, dialect.do_rollback = _commit, _rollback
        event.listen(engine, "checkin", lambda dbapi_conn, *_: lock.release(dbapi_conn))
        for name in ("invalidate", "close", "close_detached"):
            event.listen(engine, name, lambda dbapi_conn, *_: lock.forget(dbapi_conn))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"options": "-c synchronous_commit=on"},
        hide_parameters=True,
    )  # bound values (patient data) never in errors/logs
    return engine


def create_schema(engine: Engine, *, upgrade: bool | None = None) -> str:
    """Make the schema ready: create it in an empty database, upgrade an old one on SQLite,
    refuse an old one on PostgreSQL (``interface db upgrade``). See ``interface.store.schema_version``."""
    from interface.store.schema_version import ensure_schema

    return ensure_schema(engine, upgrade=upgrade)
