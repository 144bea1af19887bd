"""The scan cover sheet's index: what its barcode says, and its checksum.

A cover sheet separates a scanned batch into documents and carries each one's index. Its QR code
holds one line of text::

    IFSCAN1|<mrn>|<visit>|<type>|<pages>|<family>|<given>|<birth date>|<checksum>

each field percent-encoded (so ``|`` cannot appear inside one), empty when not given; ``pages``
is the expected page count of the document after the sheet (empty: not stated). ``checksum`` is
the first eight hex digits (upper case) of the SHA-256 of everything before the last ``|``; it
is also printed on the sheet so a clerk can compare it. The name and birth date are the chart's
when the sheet was printed: the identity rules compare them with the chart at filing time.

Pure: no I/O. :func:`parse` tells apart "not a cover sheet" (None), a sheet whose checksum does
not match (``valid`` False) and a good one.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from urllib.parse import quote, unquote

PREFIX = "IFSCAN1"


@dataclass(frozen=True)
class CoverSheet:
    """The index one cover sheet carries."""

    mrn: str
    visit_number: str | None = None
    type: str | None = None
    pages: int | None = None
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    checksum: str = ""
    valid: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def _fields(sheet: CoverSheet) -> list[str]:
    return [
        sheet.mrn,
        sheet.visit_number or "",
        sheet.type or "",
        str(sheet.pages) if sheet.pages else "",
        sheet.family or "",
        sheet.given or "",
        sheet.birth_date or "",
    ]


def checksum(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:8].upper()


def encode(sheet: CoverSheet) -> str:
    """The barcode text for ``sheet`` (its checksum computed here)."""
    if not sheet.mrn.strip():
        raise ValueError("a cover sheet needs an MRN")
    body = "|".join([PREFIX] + [quote(f.strip(), safe="") for f in _fields(sheet)])
    return f"{body}|{checksum(body)}"


def with_checksum(sheet: CoverSheet) -> CoverSheet:
    """The sheet with the checksum its fields give."""
    text = encode(sheet)
    return CoverSheet(**{**asdict(sheet), "checksum": text.rsplit("|", 1)[1], "valid": True})


def parse(text: str) -> CoverSheet | None:
    """The sheet a barcode's text names; None when it is not one of ours. A sheet whose checksum
    does not match its fields (or whose fields cannot be read) comes back with ``valid`` False."""
    if not text.startswith(PREFIX + "|"):
        return None
    parts = text.split("|")
    if len(parts) != 9:
        return CoverSheet(mrn=unquote(parts[1]) if len(parts) > 1 else "", checksum="", valid=False)
    body, given_sum = text.rsplit("|", 1)
    f = [unquote(p) for p in parts[1:8]]
    pages: int | None = None
    ok = given_sum == checksum(body) and bool(f[0].strip())
    if f[3]:
        try:
            pages = int(f[3])
        except ValueError:
            ok = False
    return CoverSheet(
        mrn=f[0].strip(),
        visit_number=f[1] or None,
        type=f[2] or None,
        pages=pages,
        family=f[4] or None,
        given=f[5] or None,
        birth_date=f[6] or None,
        checksum=given_sum,
        valid=ok,
    )
