"""The unknown-patient desk: which charts might be the person an item's message names?

:func:`candidates` narrows the patients with the database (same birth date, or a family or given
name starting alike, or the same phone digits), then scores each with
:func:`interface.rules.identity.score` on name, birth date, sex, phone, address and the national
id's last four; best first, each with its reasons in words. Merged-away charts are left out.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from interface.desk.errorqueue import ActionError, _item
from interface.rules import identity
from interface.store import chart_schema as cs
from interface.store.schema import messages

PREFILTER = 500


def message_person(conn: Connection, item_id: int, channels=None) -> identity.Person:
    """The person the item's message names (its first PID)."""
    from interface.config.channels import fallback_codec_for
    from interface.hl7.errors import HL7Error
    from interface.hl7.message import decode, parse

    item = _item(conn, item_id)
    raw = conn.execute(select(messages.c.raw).where(messages.c.id == item.message_id)).scalar_one()
    try:
        msg = parse(decode(raw, fallback_codec_for(channels, item.channel)).text)
    except HL7Error as exc:
        raise ActionError(f"the message cannot be read: {exc}") from None
    return identity.person_from_message(msg)


def _iso(d: str) -> str | None:
    d = identity.norm_date(d)
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else None


def candidates(conn: Connection, item_id: int, *, channels=None, limit: int = 10) -> list[dict]:
    """The best-scoring charts for the item's patient: ``[{mrn, family, given, birth_date, sex,
    score, reasons}]``, highest score first."""
    person = message_person(conn, item_id, channels)
    return rank(conn, person, limit=limit)


def rank(conn: Connection, person: identity.Person, *, limit: int = 10) -> list[dict]:
    p = cs.patients
    conds = []
    iso = _iso(person.birth_date or "")
    if iso:
        conds.append(p.c.birth_date.like(iso + "%"))
    for col, value in ((p.c.family, person.family), (p.c.given, person.given)):
        n = identity.norm_name(value)
        if len(n) >= 2:
            conds.append(func.lower(col).like(n[:2] + "%"))
    phones = {identity.norm_phone(x) for x in person.phones} - {""}
    if phones:
        hits = select(cs.patient_phones.c.patient_id).where(
            or_(*[cs.patient_phones.c.number.like(f"%{x[-4:]}") for x in phones])
        )
        conds.append(p.c.id.in_(hits))
    if not conds:
        return []
    rows = conn.execute(
        select(p.c.id, p.c.mrn, p.c.family, p.c.given, p.c.middle, p.c.birth_date, p.c.sex, p.c.ssn)
        .where(p.c.merged_into.is_(None), or_(*conds))
        .order_by(p.c.id)
        .limit(PREFILTER)
    ).all()
    ids = [r.id for r in rows]
    phones_of: dict[int, list[str]] = {}
    addr_of: dict[int, str] = {}
    if ids:
        for r in conn.execute(
            select(cs.patient_phones.c.patient_id, cs.patient_phones.c.number).where(
                cs.patient_phones.c.patient_id.in_(ids)
            )
        ):
            if r.number:
                phones_of.setdefault(r.patient_id, []).append(r.number)
        a = cs.patient_addresses
        for r in conn.execute(
            select(a.c.patient_id, a.c.street, a.c.other, a.c.city, a.c.state, a.c.postal_code)
            .where(a.c.patient_id.in_(ids))
            .order_by(a.c.patient_id, a.c.seq)
        ):
            addr_of.setdefault(r.patient_id, " ".join(x for x in r[1:] if x))
    out = []
    for r in rows:
        chart = identity.Person(
            family=r.family,
            given=r.given,
            middle=r.middle,
            birth_date=r.birth_date,
            sex=r.sex,
            ssn=r.ssn,
            phones=phones_of.get(r.id, []),
            address=addr_of.get(r.id),
            mrn=r.mrn,
        )
        value, reasons = identity.score(person, chart)
        out.append(
            {
                "mrn": r.mrn,
                "family": r.family,
                "given": r.given,
                "birth_date": r.birth_date,
                "sex": r.sex,
                "score": value,
                "reasons": reasons,
            }
        )
    out.sort(key=lambda c: (-c["score"], c["mrn"]))
    return out[:limit]
