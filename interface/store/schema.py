"""Tables of the spine: the inbound journal, work items and their keys, events, the audit trail.

Domain tables (chart, document index, users) live in their own modules on the same ``metadata``;
:func:`load_all_tables` imports them so that ``create_all`` and Alembic see everything.
"""

from __future__ import annotations

import importlib

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from interface.store import sanitize
from interface.store.search_text import indexed_bytes

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
# Every text column refuses or escapes what a database would refuse, the same way on both
# (NUL, lone surrogates, over-long values): see interface.store.sanitize.
sanitize.guard(metadata)

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")
TS = DateTime(timezone=True)

# Domain modules that add tables to ``metadata``. Missing ones are skipped (not built yet).
TABLE_MODULES = (
    "interface.store.chart_schema",
    "interface.store.document_schema",
    "interface.desk.users",
    "interface.store.appointment_schema",
    "interface.store.identity_schema",
    "interface.store.audit_schema",
    "interface.store.scan_schema",
    "interface.store.channel_schema",
    "interface.store.message_search_schema",
    "interface.store.roi_schema",
)


def load_all_tables() -> None:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def _search_raw(context) -> bytes | None:
    """``search_raw``'s default: what the full-text index reads of the row's ``raw``."""
    return indexed_bytes(context.get_current_parameters().get("raw"))


# Every message received, with its raw bytes, header columns and the ACK we sent.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("received_at", TS, nullable=False),
    Column("peer", String(64)),
    Column("sending_application", String(227)),
    Column("sending_facility", String(227)),
    Column("receiving_application", String(227)),
    Column("receiving_facility", String(227)),
    Column("control_id", String(199)),
    Column("message_type", String(32)),  # ADT^A01
    Column("structure", String(16)),
    Column("version", String(16)),
    Column("message_time", String(32)),
    Column("patient_id", String(128)),  # the ordering key's identifier (MRN), for search
    Column("status", String(16), nullable=False),  # accepted|processed|error|rejected|quarantined|discarded
    Column("raw", LargeBinary, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("ack", LargeBinary),
    Column("ack_code", String(2)),
    Column("dedup_key", String(700), unique=True),  # channel|MSH-3|MSH-4|MSH-10; NULL when not de-duplicated
    Column("error_code", String(8)),
    Column("error_text", Text),
    Column("warning", Text),
    Column("parent_id", Id, ForeignKey("messages.id")),  # resubmitted copy -> original
    Column("batch_index", Integer),  # position inside an FHS/BHS batch frame
    # what the full-text index reads instead of ``raw`` when they differ: the message without its
    # embedded (ED, Base64) payloads; NULL = ``raw`` itself (interface.store.search_text)
    Column("search_raw", LargeBinary, default=_search_raw),
)
Index("ix_messages_channel_id", messages.c.channel, messages.c.id)
Index("ix_messages_control_id", messages.c.control_id)
Index("ix_messages_patient_id", messages.c.patient_id)
Index("ix_messages_status", messages.c.status, messages.c.id)
Index("ix_messages_type", messages.c.message_type, messages.c.id)
Index("ix_messages_received_at", messages.c.received_at)

# One work item per (message, destination). Processed in order per ordering key.
work_items = Table(
    "work_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", Id, ForeignKey("messages.id"), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("key", String(300), nullable=False),
    Column("status", String(16), nullable=False),  # pending|done|error|discarded|held
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("reason", String(64)),  # grouped error reason for clerks (unknown_patient, missing_field...)
    Column("error_location", String(64)),  # PID-3.1
    Column("last_error", Text),
)
Index("ix_work_items_status_next", work_items.c.status, work_items.c.next_attempt_at, work_items.c.id)
Index("ix_work_items_message", work_items.c.message_id)

# The ordering keys of unfinished items (1 row, 2 for merges). A row disappears when its item is
# done or discarded, in the same transaction as the item's effects, so an item is the head of its
# keys exactly when no row with a smaller item_id shares one of its keys.
work_keys = Table(
    "work_keys",
    metadata,
    Column("item_id", Id, ForeignKey("work_items.id"), primary_key=True),
    Column("key", String(300), primary_key=True),
)
Index("ix_work_keys_key_item", work_keys.c.key, work_keys.c.item_id)

# Attempt history of a work item (last error, every retry).
work_attempts = Table(
    "work_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, ForeignKey("work_items.id"), nullable=False, index=True),
    Column("at", TS, nullable=False),
    Column("outcome", String(16), nullable=False),  # done|retry|error
    Column("error", Text),
)

# Things that happened on the wire that are not messages (oversized frame, refused peer...).
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("channel", String(64)),
    Column("kind", String(32), nullable=False),
    Column("peer", String(64)),
    Column("detail", Text),
)

# Who did what, when and why: clerk actions, reveals of patient data, logins.
audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("user", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32)),
    Column("target_id", String(128)),
    Column("reason", Text),
    Column("detail", Text),
    # The patient-centric access report and the hash chain (interface.store.audit, docs/audit.md):
    Column("patient", String(128)),  # the MRN the entry is about, as it was when written
    Column("via", String(16)),  # console | api | fhir | cli (None: the engine itself)
    Column("seq", BigInteger, unique=True),  # place in the chain; None for rows from before it
    Column("entry_hash", String(64)),  # sha256(previous entry_hash + this row, canonical)
)
Index("ix_audit_at", audit.c.at)
Index("ix_audit_patient", audit.c.patient, audit.c.id)
Index("ix_audit_user_at", audit.c.user, audit.c.at)
