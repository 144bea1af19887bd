"""Database engines: SQLite (embedded default) and PostgreSQL (production), set up for durability.

SQLite: WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns), a busy timeout,
and ``BEGIN IMMEDIATE`` for every transaction so that two writers queue on the lock instead of
failing with SQLITE_BUSY when a read transaction upgrades. PostgreSQL: ``synchronous_commit=on``.
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

DEFAULT_VAR = "var"


def default_url(var_dir: str | os.PathLike = DEFAULT_VAR) -> str:
    return f"sqlite:///{Path(var_dir) / 'interface.db'}"


def resolve_url(url: str | None = None, var_dir: str | os.PathLike = DEFAULT_VAR) -> str:
    """``--db`` beats ``INTERFACE_DB_URL`` beats ``./var/interface.db``."""
    return url or os.environ.get("INTERFACE_DB_URL") or default_url(var_dir)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60},
                               pool_size=pool_size, max_overflow=20)

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

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True,
                           connect_args={"options": "-c synchronous_commit=on"})
    return engine


def create_schema(engine: Engine, *, upgrade: bool | None = None) -> str:
    """Make the schema ready: create it in an empty database, upgrade an old one on SQLite,
    refuse an old one on PostgreSQL (``interface db upgrade``). See ``interface.migrations_cli``."""
    from .migrations_cli import ensure_schema

    return ensure_schema(engine, upgrade=upgrade)
