"""Tables of the document index: entries, their version history, content blobs, deficiencies.

* ``documents`` – one row per unique document number (TXA-12, an EI) and its authority (namespace
  ID, else universal ID; ``""`` when none was sent): the current state of the entry. See
  ``document_ids`` for how an identifier is matched.
* ``document_versions`` – append-only history (``document_id`` the ``documents`` row): one row per
  MDM message applied to a document
  (and per message ignored as older than what the entry holds), with the message that made it,
  the document version it produced and that version's content address.
* ``document_blobs`` – content addressed by SHA-256 when the database backend is chosen
  (``DocumentSettings.content_dir`` is None); identical content is stored once.
* ``document_deficiencies`` – the clerks' completeness worklist, rewritten for a document every
  time it (or a document of its visit) changes; ``due_at`` rows become visible only once past.
  A finding still there keeps its row (id, ``found_at``); each names its responsible clinician
  (``responsible_*``), the service (the visit's PV1-10) and when it started (the rule's ``from``).
* ``deficiency_waivers`` – a clerk's waiver of one rule on one document, with the reason; it
  outlives the finding, so the same deficiency recurring on that document stays waived.

``message_id`` columns are plain indexed ids, not foreign keys: the dry-run path (``interface
test``) applies documents in a transaction that is rolled back and has no journal row.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from interface.store.schema import TS, Id, metadata

_TSTR = 40  # ISO timestamps as the mapping produced them (offset kept when the sender gave one)

documents = Table(
    "documents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("document_number", String(199), nullable=False),  # TXA-12.1
    Column("namespace", String(199)),  # TXA-12.2 namespace ID
    Column("universal_id", String(199)),  # TXA-12.3
    Column("universal_id_type", String(16)),  # TXA-12.4
    Column("authority", String(199), nullable=False, server_default=""),  # namespace, else universal ID
    Column("parent_document_number", String(199)),  # TXA-13.1
    Column("parent_authority", String(199)),  # TXA-13 namespace, else universal ID
    Column("replaces", String(199)),  # T08/T10 with a new number: the document this one replaced
    Column("replaces_authority", String(199)),
    Column("replaced_by", String(199)),  # T08/T09/T10: the document that made this one obsolete
    Column("replaced_by_authority", String(199)),
    Column("mrn", String(128), nullable=False),
    Column("visit_number", String(128)),
    Column("type", String(250)),
    Column("presentation", String(64)),
    Column("status", String(16)),  # TXA-17 (table 0271)
    Column("activity_at", String(_TSTR)),
    Column("origination_at", String(_TSTR)),
    Column("transcribed_at", String(_TSTR)),
    Column("edited_at", String(_TSTR)),
    Column("author", Text),  # JSON person {id, family, given, authority}
    Column("author_id", String(128)),
    Column("author_family", String(194)),
    Column("transcriptionist", Text),
    Column("authenticated_by", Text),
    Column("authenticated_at", String(_TSTR)),
    Column("confidentiality", String(16)),  # TXA-18 (table 0272)
    Column("availability", String(16)),  # TXA-19 (table 0273); CA after T11, OB after T09/T10
    Column("storage_status", String(16)),  # TXA-20 (table 0275)
    Column("change_reason", Text),
    Column("unique_document_file_name", String(250)),
    Column("placer_order", String(199)),
    Column("filler_order", String(199)),
    Column("version", Integer, nullable=False),
    Column("content_kind", String(16)),  # text | binary | reference
    Column("content_type", String(127)),
    Column("content_size", Integer),
    Column("content_sha256", String(64)),
    Column("content_reference", Text),
    Column("content_parts", Text),  # JSON list of every part (kind, media_type, size, sha256, reference)
    Column("deficiencies", Text, nullable=False, default="[]"),  # JSON findings, with due_at when timed
    Column("last_event", String(8), nullable=False),
    Column("origin", String(16)),  # None: an MDM message; "scan": scanned paper (migration 0017)
    Column("source_time", String(32)),  # MSH-7 of the last applied message, UTC-normalised sort key
    Column("message_id", Id, nullable=False),  # the message that last changed the entry
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("document_number", "authority", name="uq_documents_number_authority"),
)
Index("ix_documents_mrn", documents.c.mrn, documents.c.id)
Index("ix_documents_visit", documents.c.visit_number)
Index("ix_documents_type_status", documents.c.type, documents.c.status)
Index("ix_documents_parent", documents.c.parent_document_number)

document_versions = Table(
    "document_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("document_id", Id),  # the documents row (migration 0005 fills it for older rows)
    Column("document_number", String(199), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event", String(8), nullable=False),  # T01..T11
    Column("action", String(32), nullable=False),  # created|updated|status_changed|new_version|replaced|...
    Column("message_id", Id, nullable=False),
    Column("at", TS, nullable=False),
    Column("source_time", String(32)),
    Column("status", String(16)),
    Column("availability", String(16)),
    Column("content_kind", String(16)),
    Column("content_type", String(127)),
    Column("content_size", Integer),
    Column("content_sha256", String(64)),
    Column("content_reference", Text),
    Column("snapshot", Text, nullable=False),  # JSON of the entry as this row left it
)
Index("ix_document_versions_number", document_versions.c.document_number, document_versions.c.id)
Index("ix_document_versions_document", document_versions.c.document_id, document_versions.c.id)
Index("ix_document_versions_message", document_versions.c.message_id)

document_blobs = Table(
    "document_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
)

document_deficiencies = Table(
    "document_deficiencies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("document_id", Id),  # the documents row
    Column("document_number", String(199), nullable=False),
    Column("mrn", String(128), nullable=False),
    Column("visit_number", String(128)),
    Column("type", String(250)),
    Column("author_id", String(128)),
    Column("author_family", String(194)),
    Column("rule", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("due_at", TS),  # timed rules (unsigned past N days): shown once now >= due_at
    Column("found_at", TS, nullable=False),
    Column("responsible_role", String(16)),  # author | authenticator | attending (migration 0009)
    Column("responsible_id", String(128)),
    Column("responsible_name", String(250)),
    Column("service", String(250)),  # the visit's hospital service (PV1-10)
    Column("started_at", TS),  # the rule's ``from`` date: the finding's age counts from here
)
Index("ix_document_deficiencies_doc", document_deficiencies.c.document_number)
Index("ix_document_deficiencies_document", document_deficiencies.c.document_id)
Index("ix_document_deficiencies_mrn", document_deficiencies.c.mrn)
Index("ix_document_deficiencies_type", document_deficiencies.c.type)
Index("ix_document_deficiencies_responsible", document_deficiencies.c.responsible_id)

deficiency_waivers = Table(
    "deficiency_waivers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("document_id", Id, nullable=False),  # the documents row
    Column("document_number", String(199), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("waived_by", String(128), nullable=False),
    Column("waived_at", TS, nullable=False),
    UniqueConstraint("document_id", "rule", name="uq_deficiency_waivers_document_rule"),
)
