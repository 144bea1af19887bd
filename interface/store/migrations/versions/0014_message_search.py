"""message search: full-text index of the journal (FTS5 / tsvector + GIN), control ids by
prefix, indexes on the sending application and facility

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 10:00:00

The statements are frozen here (``interface.store.message_search_schema`` holds the same for
``create_all``); existing messages are indexed by the upgrade.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_BYTES = 200000

_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5("
    "raw, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON messages BEGIN "
    f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, substr(new.raw, 1, {_BYTES})); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_delete AFTER DELETE ON messages BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, raw) "
    f"VALUES ('delete', old.id, substr(old.raw, 1, {_BYTES})); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_update AFTER UPDATE OF raw ON messages BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, raw) "
    f"VALUES ('delete', old.id, substr(old.raw, 1, {_BYTES})); "
    f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, substr(new.raw, 1, {_BYTES})); END",
    "CREATE INDEX IF NOT EXISTS ix_messages_control_id_lower ON messages (lower(control_id))",
    f"INSERT INTO message_fts(rowid, raw) SELECT id, substr(raw, 1, {_BYTES}) FROM messages",
)

_POSTGRESQL = (
    "CREATE OR REPLACE FUNCTION message_fts_text(raw bytea) RETURNS text "
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS "
    f"$$ SELECT encode(substring(raw FROM 1 FOR {_BYTES}), 'escape') $$",
    "CREATE TABLE IF NOT EXISTS message_fts ("
    "message_id BIGINT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE, "
    "doc TSVECTOR NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_message_fts_doc ON message_fts USING gin (doc)",
    "CREATE OR REPLACE FUNCTION message_fts_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO message_fts (message_id, doc) "
    "VALUES (NEW.id, to_tsvector('simple', message_fts_text(NEW.raw))) "
    "ON CONFLICT (message_id) DO UPDATE SET doc = EXCLUDED.doc; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER message_fts_sync AFTER INSERT OR UPDATE OF raw ON messages "
    "FOR EACH ROW EXECUTE FUNCTION message_fts_sync()",
    "CREATE INDEX IF NOT EXISTS ix_messages_control_id_lower ON messages (lower(control_id) text_pattern_ops)",
    "INSERT INTO message_fts (message_id, doc) "
    "SELECT id, to_tsvector('simple', message_fts_text(raw)) FROM messages",
)

_DROP = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS message_fts_insert",
        "DROP TRIGGER IF EXISTS message_fts_delete",
        "DROP TRIGGER IF EXISTS message_fts_update",
        "DROP TABLE IF EXISTS message_fts",
        "DROP INDEX IF EXISTS ix_messages_control_id_lower",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS message_fts_sync ON messages",
        "DROP FUNCTION IF EXISTS message_fts_sync()",
        "DROP TABLE IF EXISTS message_fts",
        "DROP FUNCTION IF EXISTS message_fts_text(bytea)",
        "DROP INDEX IF EXISTS ix_messages_control_id_lower",
    ),
}


def upgrade() -> None:
    op.create_index('ix_messages_sending_application', 'messages', ['sending_application', 'id'])
    op.create_index('ix_messages_sending_facility', 'messages', ['sending_facility', 'id'])
    name = op.get_bind().dialect.name
    for statement in {"sqlite": _SQLITE, "postgresql": _POSTGRESQL}.get(name, ()):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
    op.drop_index('ix_messages_sending_facility', table_name='messages')
    op.drop_index('ix_messages_sending_application', table_name='messages')
