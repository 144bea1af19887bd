"""Helpers for the document tests: MDM text builders, patients, a TXA reader for hand-built records.

``document_from_message`` reads TXA/PID/PV1 the way ``mappings/mdm.yaml`` is specified to, so the
store can be tested before (and independently of) the mapping language.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert

from interface.hl7.message import Message, decode, parse
from interface.mapping.records import Document, Person

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_messages" / "mdm"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)

PID = "PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800115|F"
PV1 = "PV1|1|I|4W^401^A||||||||||||||||{visit}^^^HOSP^VN"


def mdm(
    event: str,
    number: str,
    *,
    mrn: str = "100001",
    parent: str = "",
    status: str = "AU",
    type_: str = "HP",
    visit: str = "V1",
    time: str = "20261120100000",
    availability: str = "AV",
    author: str = "1234^SMITH^JOHN",
    auth: str = "1234^SMITH^JOHN^^^^^^^^^^^^20261120095500",
    activity: str = "20261120090000",
    origination: str = "20261120091500",
    obx: tuple[str, ...] = (),
    control_id: str = "C1",
) -> Message:
    """An MDM message as text, parsed. Only the fields the index reads are filled."""
    txa = [
        "TXA",
        "1",
        type_,
        "TX",
        activity,
        "",
        origination,
        "",
        "",
        author,
        "",
        "",
        number,
        parent,
        "",
        "",
        "",
        status,
        "U",
        availability,
        "AC",
        "",
        auth,
    ]
    segs = [
        f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{control_id}|P|2.5.1",
        f"EVN|{event}|{time}",
        PID.format(mrn=mrn),
        PV1.format(visit=visit),
        "|".join(txa),
        *obx,
    ]
    return parse("\r".join(segs))


def _person(msg: Message, seg: str, fieldno: int) -> Person:
    return Person(
        id=msg.value(seg, fieldno, 1, 1) or None,
        family=msg.value(seg, fieldno, 1, 2) or None,
        given=msg.value(seg, fieldno, 1, 3) or None,
        authority=msg.value(seg, fieldno, 1, 9) or None,
    )


def _iso(ts: str) -> str | None:
    ts = ts.strip()
    if len(ts) < 8:
        return None
    out = f"{ts[0:4]}-{ts[4:6]}-{ts[6:8]}"
    if len(ts) >= 12:
        out += f"T{ts[8:10]}:{ts[10:12]}:{ts[12:14] or '00'}"
    return out


def document_from_message(msg: Message) -> Document:
    """The Document record the MDM mapping produces (content left None)."""
    mrn = ""
    for rep in msg.repetitions(msg.all("PID")[0].raw(3)):
        comps = msg.components(rep) + [""] * 5
        if comps[4] in ("MR", "") and comps[0]:
            mrn = msg.unescape(comps[0])
            break
    return Document(
        event=msg.header.trigger,
        mrn=mrn or None,
        visit_number=msg.value("PV1", 19) or None,
        document_number=msg.value("TXA", 12) or None,
        parent_document_number=msg.value("TXA", 13) or None,
        type=msg.value("TXA", 2) or None,
        presentation=msg.value("TXA", 3) or None,
        activity_at=_iso(msg.value("TXA", 4)),
        origination_at=_iso(msg.value("TXA", 6)),
        transcribed_at=_iso(msg.value("TXA", 7)),
        edited_at=_iso(msg.value("TXA", 8)),
        author=_person(msg, "TXA", 9),
        transcriptionist=_person(msg, "TXA", 11),
        status=msg.value("TXA", 17) or None,
        confidentiality=msg.value("TXA", 18) or None,
        availability=msg.value("TXA", 19) or None,
        storage_status=msg.value("TXA", 20) or None,
        change_reason=msg.value("TXA", 21) or None,
        authenticated_by=_person(msg, "TXA", 22),
        authenticated_at=_iso(msg.value("TXA", 22, 1, 15)),
    )


def load_sample(name: str) -> Message:
    return parse(decode((SAMPLES / name).read_bytes()).text)


def add_patient(conn, mrn: str, merged_into: str | None = None) -> None:
    """Insert a bare patient row (the chart's table) so the index knows the MRN."""
    from interface.store.chart_schema import patients

    conn.execute(insert(patients).values(mrn=mrn, merged_into=merged_into, created_at=NOW, updated_at=NOW))
