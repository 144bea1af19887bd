"""``interface db ...``: schema migrations (Alembic) and retention, plus the schema check every
process runs at start.

Who creates and upgrades the schema:

* ``interface db upgrade`` applies every migration up to the newest (Alembic ``head``), inside one
  transaction, under a lock (SQLite: the write lock; PostgreSQL: a transaction-scoped advisory
  lock), so two upgrades never race.
* ``interface run`` (and every command that opens the database) calls :func:`ensure_schema`:
  an empty database gets the whole schema (``create_all`` + stamp ``head``, the same tables the
  migrations build — tests/test_migrations.py proves it); a database at ``head`` is used as is;
  a database at an older revision is upgraded on SQLite (the embedded set-up has no operator
  step) and refused on PostgreSQL with a message naming ``interface db upgrade`` — in
  production the schema changes only when an operator says so, after a backup, and engine
  processes on other machines still running the previous version are not surprised.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from interface.hl7.errors import ConfigError

log = logging.getLogger("interface.store.migrations")


logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO chatter at every start; we log what matters

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key for schema changes (any constant; 'ifschema' in ASCII).
SCHEMA_LOCK = 0x6966736368656D61


class SchemaError(ConfigError):
    """The database schema is not what this engine version needs; the message says what to do."""

    def __init__(self, message: str):
        super().__init__([message])


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return _script().get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _lock(conn: Connection) -> None:
    """Serialise schema work between processes (SQLite: BEGIN IMMEDIATE already holds the lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})


def ensure_schema(engine: Engine, *, upgrade: bool | None = None) -> str:
    """Make the database usable by this engine version (see the module docstring).

    ``upgrade``: may an older schema be migrated here? Default: yes on SQLite, no on PostgreSQL.
    Returns what was done: ``current``, ``created``, ``upgraded``. Raises SchemaError otherwise.
    """
    from interface.store.schema import load_all_tables, metadata

    if upgrade is None:
        upgrade = engine.dialect.name == "sqlite"
    head = head_revision()
    with engine.connect() as conn:  # the common case, without taking any lock
        if current_revision(conn) == head:
            return "current"
    load_all_tables()
    with engine.begin() as conn:
        _lock(conn)
        rev = current_revision(conn)
        if rev == head:
            return "current"
        if rev is None:
            if inspect(conn).has_table("messages"):
                # Made by create_all before migrations existed: add what is missing, then stamp.
                log.warning(
                    "database has tables but no schema revision: creating missing tables "
                    "and stamping revision %s",
                    head,
                )
            metadata.create_all(conn)
            command.stamp(alembic_config(conn), "head")
            return "created"
        try:
            _script().get_revision(rev)
        except Exception:
            raise SchemaError(
                f"the database schema is at revision {rev}, which this engine version does "
                f"not know (a newer version migrated it?); this version needs {head}"
            ) from None
        if not upgrade:
            raise SchemaError(
                f"the database schema is at revision {rev}; this engine version needs {head}: "
                f"run `interface db upgrade` (after a backup), then start the engine"
            )
        command.upgrade(alembic_config(conn), "head")
        log.info("database schema upgraded from %s to %s", rev, head)
        return "upgraded"


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision`` in one transaction under the schema lock; returns
    (before, after)."""
    with engine.begin() as conn:
        _lock(conn)
        before = current_revision(conn)
        command.upgrade(alembic_config(conn), revision)
        return before, current_revision(conn)


def downgrade(engine: Engine, revision: str) -> tuple[str | None, str | None]:
    with engine.begin() as conn:
        _lock(conn)
        before = current_revision(conn)
        command.downgrade(alembic_config(conn), revision)
        return before, current_revision(conn)


# -- command line --------------------------------------------------------------------------------
