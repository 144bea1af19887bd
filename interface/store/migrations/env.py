"""Alembic environment: the target is ``interface.store.schema.metadata`` with every domain module loaded.

Called two ways: by :mod:`interface.store.schema_version` (and :func:`interface.store.db.create_schema`) with a
Connection already in a transaction in ``config.attributes["connection"]`` — the migration then runs
inside that transaction, under the caller's lock — or by the ``alembic`` command line, which opens
its own connection from ``-x url=...`` / ``INTERFACE_DB_URL`` / ``./var/interface.store.db``.
"""

from __future__ import annotations

from alembic import context

from interface.store import db as dbmod
from interface.store.schema import load_all_tables, metadata

load_all_tables()
config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or dbmod.resolve_url()
    context.configure(
        url=url.replace("postgresql://", "postgresql+psycopg://", 1),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or dbmod.resolve_url()
    engine = dbmod.make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
