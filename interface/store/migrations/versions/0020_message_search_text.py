"""message search: index each message without its embedded ED/Base64 payloads
(``messages.search_raw``)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 00:10:00

``messages.search_raw`` holds what the full-text index reads when it differs from ``raw``: the
message with the data of every ED OBX-5 (and any other long Base64 run) left out
(``interface.store.search_text``; NULL = ``raw`` itself). The full-text triggers of ``0014``
read ``coalesce(search_raw, raw)``, frozen here; the existing messages get their ``search_raw``
through an UPDATE after the new triggers are in place, so each such row leaves the index with
what ``0014`` indexed (its ``raw``) and comes back with its ``search_raw`` — never FTS5's
``'rebuild'``, which would read ``raw``. Only rows that can differ are read (at least
``MIN_RUN`` bytes), in batches by id. A plain ``ADD COLUMN``: never a batch rebuild of
``messages`` (it would drop the triggers).

The rule is the application's own (imported, not frozen): a later change of it indexes new
messages that way, and this upgrade reads the messages there are then the same way.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from interface.store.search_text import MIN_RUN, indexed_bytes


revision: str = '0020'
down_revision: Union[str, Sequence[str], None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_BYTES = 200000
_BATCH = 500


def _sqlite(column: bool) -> tuple[str, ...]:
    value = "substr(coalesce({row}.search_raw, {row}.raw), 1, %d)" if column else "substr({row}.raw, 1, %d)"
    new, old = (value % _BYTES).format(row="new"), (value % _BYTES).format(row="old")
    of = "raw, search_raw" if column else "raw"
    return (
        "DROP TRIGGER IF EXISTS message_fts_insert",
        "DROP TRIGGER IF EXISTS message_fts_delete",
        "DROP TRIGGER IF EXISTS message_fts_update",
        f"CREATE TRIGGER message_fts_insert AFTER INSERT ON messages BEGIN "
        f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER message_fts_delete AFTER DELETE ON messages BEGIN "
        f"INSERT INTO message_fts(message_fts, rowid, raw) VALUES ('delete', old.id, {old}); END",
        f"CREATE TRIGGER message_fts_update AFTER UPDATE OF {of} ON messages BEGIN "
        f"INSERT INTO message_fts(message_fts, rowid, raw) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, {new}); END",
    )


def _postgresql(column: bool) -> tuple[str, ...]:
    value = "coalesce(NEW.search_raw, NEW.raw)" if column else "NEW.raw"
    of = "raw, search_raw" if column else "raw"
    return (
        "CREATE OR REPLACE FUNCTION message_fts_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO message_fts (message_id, doc) "
        f"VALUES (NEW.id, to_tsvector('simple', message_fts_text({value}))) "
        "ON CONFLICT (message_id) DO UPDATE SET doc = EXCLUDED.doc; RETURN NULL; END $$",
        "DROP TRIGGER IF EXISTS message_fts_sync ON messages",
        f"CREATE TRIGGER message_fts_sync AFTER INSERT OR UPDATE OF {of} ON messages "
        "FOR EACH ROW EXECUTE FUNCTION message_fts_sync()",
    )


def _triggers(column: bool) -> None:
    name = op.get_bind().dialect.name
    statements = {"sqlite": _sqlite, "postgresql": _postgresql}.get(name)
    for statement in statements(column) if statements else ():
        op.execute(statement)


def upgrade() -> None:
    op.add_column('messages', sa.Column('search_raw', sa.LargeBinary(), nullable=True))
    _triggers(column=True)
    conn = op.get_bind()
    messages = sa.table('messages', sa.column('id'), sa.column('raw', sa.LargeBinary()),
                        sa.column('search_raw', sa.LargeBinary()))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.raw)
            .where(messages.c.id > last, sa.func.length(messages.c.raw) >= MIN_RUN)
            .order_by(messages.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            search_raw = indexed_bytes(row.raw)
            if search_raw is not None:  # the update trigger re-indexes the row
                conn.execute(
                    sa.update(messages).where(messages.c.id == row.id).values(search_raw=search_raw)
                )


def downgrade() -> None:
    conn = op.get_bind()
    messages = sa.table('messages', sa.column('search_raw', sa.LargeBinary()))
    # back to indexing raw, row by row through the update trigger, then 0014's triggers
    conn.execute(sa.update(messages).where(messages.c.search_raw.is_not(None)).values(search_raw=None))
    _triggers(column=False)
    op.drop_column('messages', 'search_raw')
