"""Who a scanned page is about, read from its OCR text: names, birth dates and MRNs by label.

Pure. Only labelled values are taken (``Patient:``, ``Name:``, ``DOB``, ``Born``, ``Date of
birth``, ``MRN``), so a clinician's name in a letterhead is not read as the patient's. Dates as
``YYYY-MM-DD``, ``DD/MM/YYYY`` or ``DD.MM.YYYY`` (day first, as in the engine's locale; a first
number over 12 settles the order either way). The result feeds the unknown-patient desk's scoring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from interface.rules.identity import Person

_NAME = re.compile(r"(?im)^\W*(?:patient(?:\s+name)?|name)\s*[:\-]?\s+([A-Za-z][A-Za-z' .,-]{2,60})$")
_DOB = re.compile(
    r"(?i)\b(?:dob|d\.o\.b\.?|born|date\s+of\s+birth|birth\s*date)\s*[:\-]?\s*"
    r"(\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{4})"
)
_MRN = re.compile(r"(?i)\b(?:mrn|medical\s+record\s+(?:number|no\.?))\s*[:#\-]?\s*([A-Za-z0-9-]{3,20})\b")


@dataclass
class Found:
    person: Person
    mrns: list[str] = field(default_factory=list)


def _date(text: str) -> str | None:
    if "-" in text:
        y, m, d = text.split("-")
    else:
        a, b, y = re.split(r"[/.]", text)
        d, m = (a, b) if int(a) > 12 or int(b) <= 12 else (b, a)
    try:
        yi, mi, di = int(y), int(m), int(d)
    except ValueError:
        return None
    if not (1 <= mi <= 12 and 1 <= di <= 31 and 1850 <= yi <= 2100):
        return None
    return f"{yi:04d}{mi:02d}{di:02d}"


def _name(value: str) -> tuple[str | None, str | None]:
    value = value.strip(" .,-")
    if "," in value:
        family, _, given = value.partition(",")
        return family.strip() or None, (given.strip().split() or [None])[0]
    words = value.split()
    if len(words) == 1:
        return words[0], None
    return words[-1], words[0]


def read(text: str) -> Found:
    """The person the text names (first labelled name and birth date) and the MRNs it cites."""
    family = given = birth = None
    m = _NAME.search(text or "")
    if m:
        family, given = _name(m.group(1))
    for d in _DOB.finditer(text or ""):
        birth = _date(d.group(1))
        if birth:
            break
    mrns = list(dict.fromkeys(x.group(1) for x in _MRN.finditer(text or "")))
    return Found(Person(family=family, given=given, birth_date=birth), mrns)
