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
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from interface.hl7.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic (with Mako and Pygments, ~35 MB resident) is imported only to create, stamp or migrate:
# the check every process makes at start (a database already at head) reads the head from the
# migration files and the current revision from ``alembic_version`` (docs/benchmarks.md, #21).

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


_REVISION = re.compile(r"^revision(?:\s*:[^=\n]*)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=\n]*)?\s*=\s*(.*)$", re.M)


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration. Read from the migration files (``revision = ...`` and
    ``down_revision = ...``) when they form one chain with one head, as they do here; else
    Alembic decides (tests/test_migrations.py checks both agree)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        body = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(body), _DOWN_REVISION.search(body)
        if rev is None or down is None:
            return _script().get_current_head()
        revisions.add(rev.group(1))
        downs.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - downs
    if len(heads) != 1 or not downs <= revisions:
        return _script().get_current_head()
    return heads.pop()


def current_revision(conn: Connection) -> str | None:
    """The database's revision (``alembic_version``), None when it has none."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) == 1:
        return rows[0]
    if not rows:
        return None
    from alembic.runtime.migration import MigrationContext  # several heads: Alembic's answer

    return MigrationContext.configure(conn).get_current_revision()


def _stamp(conn: Connection, head: str) -> None:
    """What ``alembic stamp head`` does on a database without ``alembic_version``: the table
    (Alembic's own definition) and one row, the head. Without importing Alembic, which a fresh
    database would otherwise make every engine start carry (tests/test_migrations.py checks
    Alembic reads it back)."""
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert

    version = Table(
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(conn)
    conn.execute(insert(version).values(version_num=head))


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
            _stamp(conn, head)
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
        from alembic import command

        command.upgrade(alembic_config(conn), "head")
        log.info("database schema upgraded from %s to %s", rev, head)
        return "upgraded"


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision`` in one transaction under the schema lock; returns
    (before, after)."""
    with engine.begin() as conn:
        _lock(conn)
        before = current_revision(conn)
        from alembic import command

        command.upgrade(alembic_config(conn), revision)
        return before, current_revision(conn)


def downgrade(engine: Engine, revision: str) -> tuple[str | None, str | None]:
    with engine.begin() as conn:
        _lock(conn)
        before = current_revision(conn)
        from alembic import command

        command.downgrade(alembic_config(conn), revision)
        return before, current_revision(conn)


# -- command line --------------------------------------------------------------------------------
