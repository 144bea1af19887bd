"""``identity_reviews``: the identity check's findings and the clerks' decisions on them.

One row per work item and message the identity check held (``status`` ``mismatch``), with the
two people and their differences (``detail``, JSON) for the side-by-side page; a clerk's
"file anyway" turns it into ``filed_anyway`` (who, when, why), which lets exactly that message
through to exactly that chart when the item runs again. Refiling and sending back leave the row
as it was (``refiled`` / ``sent_back``) as the record of what was decided.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from interface.store.schema import TS, Id, metadata

identity_reviews = Table(
    "identity_reviews",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, nullable=False, index=True),
    Column("message_id", Id, nullable=False, index=True),
    Column("mrn", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # mismatch | filed_anyway | refiled | sent_back
    Column("detail", Text),  # JSON {message: person, chart: person, differences: [...]}
    Column("created_at", TS, nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", TS),
    Column("reason", Text),
)
Index("ix_identity_reviews_message_mrn", identity_reviews.c.message_id, identity_reviews.c.mrn)
