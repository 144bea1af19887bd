"""The journal's search indexes: full text of every message, control ids by prefix, senders.

Full text is a real index kept in step with ``messages`` by database triggers, so every way a
row enters the journal (the engine's group commit, a clerk's edited copy, an application ACK)
is indexed in the same transaction as its insert, and a row deleted by retention leaves it:

What is indexed is ``search_raw`` when it is set — the message without its embedded ED/Base64
payloads (``interface.store.search_text``, migration ``0020``) — else ``raw``, either cut at
:data:`INDEXED_BYTES`:

* **SQLite**: ``message_fts``, an FTS5 table with external content (``content='messages'``,
  rowid = ``messages.id``): the index only, no second copy of the text. Triggers on insert,
  delete and update of ``raw`` or ``search_raw`` feed it those bytes read as UTF-8 (never FTS5's
  ``'rebuild'``, which would read ``raw`` whole); the ``unicode61`` tokenizer splits on the HL7 delimiters (``| ^ ~ & \\``).
* **PostgreSQL**: ``message_fts (message_id, doc tsvector)`` with a GIN index, filled by a
  trigger with ``to_tsvector('simple', message_fts_text(coalesce(search_raw, raw)))``; ``message_fts_text`` spells
  non-ASCII bytes as octal escapes (never fails on a non-UTF-8 message), and queries go through
  the same function, so a UTF-8 word still matches (as a phrase of its pieces).

Control ids are searched case-insensitively by prefix on ``lower(control_id)`` (a plain index
on SQLite, searched as a range; ``text_pattern_ops`` on PostgreSQL, searched with ``LIKE``).

These objects are not SQLAlchemy tables (they are dialect-specific): :func:`ddl` is run after
``metadata.create_all`` and, frozen, by migrations ``0014`` and ``0020`` (``search_raw``). ``tests/test_migrations.py`` checks
they exist by name (:data:`OBJECTS`).
"""

from __future__ import annotations

from sqlalchemy import DDL, Index, event

from interface.store.schema import messages, metadata
from interface.store.search_text import INDEXED_BYTES

# Plain indexes, in the metadata (compared with the migrations like any other).
Index("ix_messages_sending_application", messages.c.sending_application, messages.c.id)
Index("ix_messages_sending_facility", messages.c.sending_facility, messages.c.id)
# A date range with a sender and a type: the range is read within one sender's messages of that
# type, not the whole day's (migration 0018; docs/benchmarks.md "Message search": PostgreSQL does
# not choose a (sending_application, received_at) index over the range's own).
Index(
    "ix_messages_sender_type_received",
    messages.c.sending_application,
    messages.c.message_type,
    messages.c.received_at,
)

OBJECTS = {
    "sqlite": ("message_fts", "ix_messages_control_id_lower"),
    "postgresql": ("message_fts", "ix_message_fts_doc", "ix_messages_control_id_lower"),
}

_INDEXED = "substr(coalesce({row}.search_raw, {row}.raw), 1, %d)" % INDEXED_BYTES
_NEW, _OLD = _INDEXED.format(row="new"), _INDEXED.format(row="old")

_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5("
    "raw, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON messages BEGIN "
    f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, {_NEW}); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_delete AFTER DELETE ON messages BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, raw) VALUES ('delete', old.id, {_OLD}); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_update AFTER UPDATE OF raw, search_raw ON messages BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, raw) VALUES ('delete', old.id, {_OLD}); "
    f"INSERT INTO message_fts(rowid, raw) VALUES (new.id, {_NEW}); END",
    "CREATE INDEX IF NOT EXISTS ix_messages_control_id_lower ON messages (lower(control_id))",
)

_POSTGRESQL = (
    "CREATE OR REPLACE FUNCTION message_fts_text(raw bytea) RETURNS text "
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS "
    f"$$ SELECT encode(substring(raw FROM 1 FOR {INDEXED_BYTES}), 'escape') $$",
    "CREATE TABLE IF NOT EXISTS message_fts ("
    "message_id BIGINT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE, "
    "doc TSVECTOR NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_message_fts_doc ON message_fts USING gin (doc)",
    "CREATE OR REPLACE FUNCTION message_fts_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO message_fts (message_id, doc) "
    "VALUES (NEW.id, to_tsvector('simple', message_fts_text(coalesce(NEW.search_raw, NEW.raw)))) "
    "ON CONFLICT (message_id) DO UPDATE SET doc = EXCLUDED.doc; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER message_fts_sync AFTER INSERT OR UPDATE OF raw, search_raw ON messages "
    "FOR EACH ROW EXECUTE FUNCTION message_fts_sync()",
    "CREATE INDEX IF NOT EXISTS ix_messages_control_id_lower ON messages (lower(control_id) text_pattern_ops)",
)

DROP = {
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


def ddl(dialect: str) -> tuple[str, ...]:
    """The statements that create the search objects on ``dialect`` (idempotent)."""
    return {"sqlite": _SQLITE, "postgresql": _POSTGRESQL}.get(dialect, ())


def _create(target, connection, **_kw) -> None:
    for statement in ddl(connection.dialect.name):
        connection.execute(DDL(statement))


event.listen(metadata, "after_create", _create)


def is_search_object(name: str | None) -> bool:
    """Whether a reflected table or index is one of these (FTS5 adds shadow tables
    ``message_fts_data`` …): schema comparisons leave them to :data:`OBJECTS`."""
    return bool(name) and (name.startswith("message_fts") or name == "ix_messages_control_id_lower")
