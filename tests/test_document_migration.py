"""Migration 0005 (document numbers as EI): documents stored before it keep working — their
history and worklist rows are linked to their entry, replacements made before it name what they
replaced, and the entries are found by number alone."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text

from interface.ops import cli
from interface.store import document_read
from interface.store import documents as D
from interface.store.db import make_engine

from .test_migrations import empty_url  # noqa: F401  (the fixture: a new database of the backend)

AT = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def _row(number: str, **kw) -> dict:
    return {
        "document_number": number,
        "mrn": "100001",
        "version": 1,
        "deficiencies": "[]",
        "last_event": "T02",
        "message_id": 1,
        "created_at": AT,
        "updated_at": AT,
        "parent_document_number": None,
        "replaced_by": None,
        "availability": "AV",
        **kw,
    }


def test_upgrade_links_old_rows_and_keeps_them_reachable(empty_url):  # noqa: F811
    """At 0004: P1 replaced by R1 (T09), each with history and P1 with a worklist row; after the
    upgrade the rows name their entry, R1 replaces P1, and get_document finds both by number."""
    assert cli.main(["db", "upgrade", "0004", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        with eng.begin() as conn:
            for row in (
                _row("P1", availability="OB", replaced_by="R1"),
                _row("R1", parent_document_number="P1", last_event="T09"),
            ):
                conn.execute(
                    text(
                        "INSERT INTO documents (document_number, mrn, version, deficiencies, last_event, message_id,"
                        " created_at, updated_at, parent_document_number, replaced_by, availability) VALUES"
                        " (:document_number, :mrn, :version, :deficiencies, :last_event, :message_id, :created_at,"
                        " :updated_at, :parent_document_number, :replaced_by, :availability)"
                    ),
                    row,
                )
            for number, action in (("P1", "created"), ("R1", "replacement_created"), ("P1", "replaced")):
                conn.execute(
                    text(
                        "INSERT INTO document_versions (document_number, version, event, action, message_id, at,"
                        " snapshot) VALUES (:n, 1, 'T02', :a, 1, :at, '{}')"
                    ),
                    {"n": number, "a": action, "at": AT},
                )
            conn.execute(
                text(
                    "INSERT INTO document_deficiencies (document_number, mrn, rule, message, found_at)"
                    " VALUES ('P1', '100001', 'author_present', 'no author', :at)"
                ),
                {"at": AT},
            )
    finally:
        eng.dispose()
    assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        with eng.connect() as conn:
            ids = dict(conn.execute(text("SELECT document_number, id FROM documents")).all())
            versions = conn.execute(text("SELECT document_number, document_id FROM document_versions")).all()
            assert all(doc_id == ids[number] for number, doc_id in versions) and len(versions) == 3
            (deficiency,) = conn.execute(text("SELECT document_id FROM document_deficiencies")).all()
            assert deficiency[0] == ids["P1"]
            p1, r1 = document_read.get_document(conn, "P1"), document_read.get_document(conn, "R1")
            assert [v["action"] for v in p1["versions"]] == ["created", "replaced"]
            assert (p1["replaced_by"], p1["namespace"], r1["replaces"]) == ("R1", None, "P1")
    finally:
        eng.dispose()
