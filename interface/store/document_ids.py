"""Which stored document an identifier names. Document numbers are EI (HL7 v2.5.1 section 2.A;
TXA-12 and TXA-13, 9.6.1.12/13): entity identifier, namespace ID, universal ID, universal ID type.

The *authority* of a number is its namespace ID, else its universal ID, else ``""`` (none sent).
A document is stored once per (number, authority): the same number in two namespaces is two
documents. Matching an incoming identifier:

* with an authority: the document with that number and authority; failing that, the one document
  of that number stored without an authority (stored before namespaces were kept, or sent
  without one) — it is then the same document and learns the authority;
* without an authority: the only document with that number (whatever its authority); with several,
  the one stored without an authority, else :class:`AmbiguousDocument` (the sender must say which).

The read API addresses a document the same way: ``/api/documents/{number}?namespace=`` (namespace
ID or universal ID), the number alone while it is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from interface.store.document_schema import documents


@dataclass(frozen=True)
class DocumentId:
    """One EI as the mapping read it (already stripped; None where not sent)."""

    number: str
    namespace: str | None = None
    universal_id: str | None = None
    universal_id_type: str | None = None

    @property
    def authority(self) -> str:
        return authority_of(self.namespace, self.universal_id)

    def label(self) -> str:
        """The identifier as a clerk reads it: ``number`` or ``number^namespace``."""
        return f"{self.number}^{self.authority}" if self.authority else self.number


def authority_of(namespace: str | None, universal_id: str | None) -> str:
    return (namespace or "").strip() or (universal_id or "").strip()


class AmbiguousDocument(LookupError):
    """The number alone names several stored documents (in different namespaces)."""

    def __init__(self, number: str, authorities: list[str]):
        super().__init__(
            f"document number {number} is held in several namespaces "
            f"({', '.join(a or '(none)' for a in authorities)}): say which"
        )
        self.number = number
        self.authorities = authorities


def rows_for(conn: Connection, number: str) -> list[dict]:
    q = select(documents).where(documents.c.document_number == number).order_by(documents.c.id)
    return [dict(r) for r in conn.execute(q).mappings()]


def match(conn: Connection, number: str, authority: str | None) -> dict | None:
    """The stored row an identifier names (rules in the module docstring); None if none.

    ``authority`` None means "not given" (the API without ``?namespace=``), like ``""``.
    """
    rows = rows_for(conn, number)
    if not rows:
        return None
    authority = (authority or "").strip()
    if authority:
        exact = [r for r in rows if r["authority"] == authority]
        if exact:
            return exact[0]
        bare = [r for r in rows if not r["authority"]]
        return bare[0] if len(bare) == 1 else None
    if len(rows) == 1:
        return rows[0]
    bare = [r for r in rows if not r["authority"]]
    if len(bare) == 1:
        return bare[0]
    raise AmbiguousDocument(number, [r["authority"] for r in rows])


def load(conn: Connection, row_id: int) -> dict | None:
    row = conn.execute(select(documents).where(documents.c.id == row_id)).mappings().first()
    return dict(row) if row else None
