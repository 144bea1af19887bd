"""Shared fixtures. The database under test is SQLite (a temp file per test) unless
INTERFACE_TEST_DB_URL names another (CI sets it to the local PostgreSQL and runs the suite again)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from interface.store.db import create_schema, make_engine
from interface.store.schema import load_all_tables, metadata

ROOT = Path(__file__).resolve().parent.parent
# The public corpus (real HL7 v2 examples; origins and licences in tests/corpus/SOURCES.md), copied
# from the workspace's shared/corpus/public so that a clean clone tests the same messages.
CORPUS = ROOT / "tests" / "corpus"


def pytest_configure(config):
    """The patient-data log guard watches the whole run (tests/pii_log_guard.py)."""
    from tests import pii_log_guard

    pii_log_guard.pytest_configure(config)


TEST_DB_URL = os.environ.get("INTERFACE_TEST_DB_URL", "")
PG_SESSION_URL = ""  # the per-session PostgreSQL database (set by _pg_engine)


class Clock:
    """An injected clock: ``clock()`` is ``clock.now``, which only ``advance`` moves."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **kw) -> None:
        self.now += timedelta(seconds=seconds, **kw)


def corpus_files(pattern: str = "*.hl7") -> list[Path]:
    return sorted(CORPUS.glob(pattern))


@pytest.fixture(scope="session")
def _pg_engine():
    if not TEST_DB_URL:
        yield None
        return
    # A database of its own per test session, so concurrent runs on one server never collide.
    # Connecting fails loudly if PostgreSQL is unreachable: the PostgreSQL run never skips.
    global PG_SESSION_URL
    admin = create_engine(
        TEST_DB_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"itest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    PG_SESSION_URL = make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(PG_SESSION_URL)
    load_all_tables()
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate(engine) -> None:
    load_all_tables()
    names = [t.name for t in metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
        else:
            for n in reversed(names):
                conn.execute(text(f'DELETE FROM "{n}"'))


@pytest.fixture
def db_url(tmp_path, _pg_engine) -> str:
    """A database URL with the schema created and empty tables."""
    if _pg_engine is not None:
        _truncate(_pg_engine)
        return PG_SESSION_URL
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def engine(db_url, _pg_engine):
    """A SQLAlchemy engine on an empty database with every table."""
    if _pg_engine is not None:
        yield _pg_engine
        return
    eng = make_engine(db_url)
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def now():
    return datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
