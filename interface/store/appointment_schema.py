"""The ``appointments`` table: one row per appointment a scheduling system (SIU) told us about.

An appointment is named by its filler appointment ID (SCH-2, an EI: the scheduling system's own
number) and/or its placer appointment ID (SCH-1); each is kept as identifier and namespace
(``""`` when none was sent, so the lookups compare plain values). ``mrn`` is the MRN the message
gave (the chart follows merges when it is read). ``start_utc`` is ``start_at`` in UTC for the
chart-prep window; ``start_at`` / ``end_at`` keep the sender's ISO text (offset, precision).
``message_id`` is a plain indexed id, not a foreign key: ``interface test`` applies messages that
are never journaled.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table

from interface.store.schema import TS, Id, metadata

_ISO = String(40)
_S = String(250)

appointments = Table(
    "appointments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("placer_id", String(199)),  # SCH-1.1
    Column("placer_namespace", String(199), nullable=False, server_default=""),  # SCH-1.2
    Column("filler_id", String(199)),  # SCH-2.1
    Column("filler_namespace", String(199), nullable=False, server_default=""),  # SCH-2.2
    Column("mrn", String(128), nullable=False),
    Column("start_at", _ISO),
    Column("start_utc", TS),
    Column("end_at", _ISO),
    Column("duration", String(32)),
    Column("duration_units", String(32)),
    Column("location", _S),  # AIL-3
    Column("provider_id", String(128)),  # AIP-3
    Column("provider_family", String(194)),
    Column("provider_given", String(128)),
    Column("provider_authority", String(128)),
    Column("status", String(32), nullable=False),  # table 0278 as words (booked, cancelled, noshow...)
    Column("reason", _S),  # SCH-7
    Column("type", _S),  # SCH-8
    Column("event_reason", _S),  # SCH-6 of the last event
    Column("last_event", String(8), nullable=False),
    Column("message_id", Id),  # the message that last changed it
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)
Index("ix_appointments_filler", appointments.c.filler_id, appointments.c.filler_namespace)
Index("ix_appointments_placer", appointments.c.placer_id, appointments.c.placer_namespace)
Index("ix_appointments_start", appointments.c.start_utc)
Index("ix_appointments_mrn", appointments.c.mrn)
Index("ix_appointments_message_id", appointments.c.message_id)
