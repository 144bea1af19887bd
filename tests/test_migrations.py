"""Alembic migrations build exactly the schema of ``interface.store.schema.metadata`` (so a table or
column added without a migration fails here), on SQLite and on PostgreSQL; ``interface run``
creates an empty database, upgrades an old SQLite one and refuses an old PostgreSQL one."""

from __future__ import annotations

import os
import threading
import uuid
import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from interface.ops import cli
from interface.store import schema_version as mig
from interface.store.db import create_schema, make_engine
from interface.store.message_search_schema import OBJECTS, is_search_object
from interface.store.schema import load_all_tables, metadata

from .conftest import TEST_DB_URL


@pytest.fixture
def empty_url(tmp_path):
    """A brand-new empty database of the backend under test (SQLite file or PostgreSQL database)."""
    if not TEST_DB_URL:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = create_engine(
        TEST_DB_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"imig_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ignore_expression_index_warnings() -> None:
    warnings.filterwarnings(
        "ignore", message="autogenerate skipping metadata-specified expression-based index"
    )
    warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")


def _differences(engine) -> list:
    load_all_tables()
    with engine.connect() as conn, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (lower(family)); checked by name below instead.
        _ignore_expression_index_warnings()
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                # the search index's dialect-specific objects: checked by name below
                "include_name": lambda name, type_, parent: not is_search_object(name),
            },
        )
        return compare_metadata(ctx, metadata)


def _search_objects_present(engine) -> None:
    """The full-text table, its index and the control-id index (not SQLAlchemy tables)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
        else:
            names = {
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relname LIKE 'message_fts%' OR relname LIKE 'ix_message%'"
                    )
                )
            }
    assert set(OBJECTS[engine.dialect.name]) <= names


def _expression_indexes_present(engine) -> None:
    with warnings.catch_warnings():
        _ignore_expression_index_warnings()
        names = {i["name"] for i in inspect(engine).get_indexes("patients")}
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            names |= {
                r[0]
                for r in conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='patients'")
                )
            }
    assert {"ix_patients_family_lower", "ix_patients_given_lower"} <= names


def test_migrations_build_exactly_the_metadata(empty_url):
    """`interface db upgrade` on an empty database: every table, column, index and constraint of
    the metadata, nothing else (compare_metadata finds no difference)."""
    assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        assert _differences(eng) == []
        _expression_indexes_present(eng)
        _search_objects_present(eng)
        with eng.connect() as conn:
            assert mig.current_revision(conn) == mig.head_revision()
        assert create_schema(eng) == "current"
    finally:
        eng.dispose()


def test_create_all_and_migrations_agree(db_url, engine):
    """The fast path for empty databases (create_all + stamp head) gives the same schema."""
    assert _differences(engine) == []
    _search_objects_present(engine)
    with engine.connect() as conn:
        assert mig.current_revision(conn) == mig.head_revision()


def test_start_check_without_alembic_agrees_with_alembic(empty_url):
    """The start-up check reads the head from the migration files and stamps a fresh database
    without importing Alembic (#21: memory); Alembic agrees with both, and can migrate from the
    stamp (down one and back up)."""
    assert mig.head_revision() == mig._script().get_current_head()
    eng = make_engine(empty_url)
    try:
        assert create_schema(eng) == "created"
        with eng.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == mig.head_revision()
            assert mig.current_revision(conn) == mig.head_revision()
        assert _differences(eng) == []
        previous = mig._script().get_revision(mig.head_revision()).down_revision
        assert mig.downgrade(eng, previous) == (mig.head_revision(), previous)
        assert mig.upgrade(eng) == (previous, mig.head_revision())
    finally:
        eng.dispose()


def test_a_process_at_head_starts_without_importing_alembic(tmp_path):
    """`interface run`'s schema check on a database already at head (the common start) and on an
    empty one (created and stamped) import neither Alembic nor the scan libraries."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'a.db'}"
    code = (
        "import sys\n"
        "from interface.store.db import create_schema, make_engine\n"
        f"e = make_engine({url!r})\n"
        "print(create_schema(e), create_schema(e))\n"
        "import interface.ops.service, interface.engine.scan_worker\n"
        "print(sorted(m for m in ('alembic', 'mako', 'pypdf', 'pypdfium2', 'PIL', 'pyzbar', 'zxcvbn')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["created current", "[]"]


def test_downgrade_to_base_and_back(empty_url, capsys):
    """Every migration can be reverted and re-applied."""
    assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
    assert cli.main(["db", "downgrade", "base", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        load_all_tables()
        left = set(inspect(eng).get_table_names()) & {t.name for t in metadata.sorted_tables}
        assert left == set()
        assert cli.main(["db", "current", "--db", empty_url]) == 1
        assert "interface db upgrade" in capsys.readouterr().out
        assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
        assert _differences(eng) == []
        assert cli.main(["db", "current", "--db", empty_url]) == 0
    finally:
        eng.dispose()


def test_old_schema_upgraded_on_sqlite_refused_on_postgresql(empty_url, capsys):
    """At start: an old SQLite schema is upgraded in place; an old PostgreSQL schema stops the
    engine with a message naming `interface db upgrade`."""
    assert cli.main(["db", "upgrade", "0001", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        with pytest.raises(mig.SchemaError, match="interface db upgrade"):
            create_schema(eng, upgrade=False)
        if eng.dialect.name == "sqlite":
            assert create_schema(eng) == "upgraded"
        else:
            with pytest.raises(mig.SchemaError, match="interface db upgrade"):
                create_schema(eng)
            assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
        assert create_schema(eng) == "current"
        assert _differences(eng) == []
    finally:
        eng.dispose()


def test_unknown_revision_is_refused(empty_url):
    """A database migrated by a newer engine version is not touched by an older one."""
    eng = make_engine(empty_url)
    try:
        create_schema(eng)
        with eng.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(mig.SchemaError, match="does not know"):
            create_schema(eng, upgrade=True)
    finally:
        eng.dispose()


def test_concurrent_starts_create_the_schema_once(empty_url):
    """Several processes starting on an empty database at once: one creates, the others wait on
    the lock and find it current."""
    engines = [make_engine(empty_url, pool_size=1) for _ in range(3)]
    results, errors = [], []
    barrier = threading.Barrier(len(engines))

    def start(e):
        try:
            barrier.wait(timeout=10)
            results.append(create_schema(e))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert sorted(results) == ["created", "current", "current"]
        assert _differences(engines[0]) == []
    finally:
        for e in engines:
            e.dispose()


def test_database_made_before_migrations_is_adopted(empty_url):
    """A database whose tables were made by create_all before migrations existed (no revision
    table) is stamped at the newest revision, missing tables added, and used as is."""
    eng = make_engine(empty_url)
    try:
        load_all_tables()
        metadata.create_all(eng, tables=[t for t in metadata.sorted_tables if t.name != "events"])
        assert create_schema(eng) == "created"
        with eng.connect() as conn:
            assert mig.current_revision(conn) == mig.head_revision()
        assert inspect(eng).has_table("events")
        assert _differences(eng) == []
    finally:
        eng.dispose()
