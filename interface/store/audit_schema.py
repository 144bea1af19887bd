"""``audit_chain``: the head of the audit trail's hash chain (one row, ``id`` 1).

Every append to ``audit`` (:func:`interface.store.audit.record`) first updates this row: on
PostgreSQL that row lock queues concurrent writers, from any process, until the writer's
transaction ends, so entries are chained in one order; on SQLite ``BEGIN IMMEDIATE`` already
serialises writers. ``seq`` and ``last_hash`` are those of the newest chained entry; ``start_id``
the first ``audit.id`` the chain covers (rows written before the chain existed have lower ids
and no hash: see docs/audit.md).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table

from interface.store.schema import TS, Id, metadata

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("start_id", Id, nullable=False),
    Column("started_at", TS),
)
