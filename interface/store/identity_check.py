"""The identity check, where a message meets the chart it would be filed to.

Before the chart or document store applies a message's records, the person its PID names is
compared (``interface.rules.identity.compare``, by the channel's rule) with the chart of each MRN
the records name (for an MRN change, A47, the chart being renamed). A mismatch raises
:class:`IdentityMismatch` (reason ``identity_mismatch``) before anything is written; the worker
puts the item in the error queue and :func:`record` keeps the two people and their differences
for the clerk's side-by-side page. A clerk's "file anyway" (``identity_reviews.status``
``filed_anyway`` for that message and chart) lets exactly that message through.

ADT from a channel with ``identity: {authoritative: true}`` is not checked: that sender is the
source of truth for who its patients are (its updates may rewrite birth date and sex).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from interface.hl7 import errors
from interface.hl7.errors import Location, PermanentError
from interface.rules import identity as rules
from interface.store import chart_schema as cs
from interface.store import fastsql
from interface.store.identity_schema import identity_reviews

REASON = "identity_mismatch"


class IdentityMismatch(PermanentError):
    """The message names another person than the chart: held for a clerk, nothing written."""

    def __init__(self, mrn: str, message: rules.Person, chart: rules.Person, diffs: list[rules.Difference]):
        fields = ", ".join(d.label.lower() for d in diffs if d.verdict == "mismatch")
        super().__init__(
            f"the patient in the message does not match the chart it would be filed to ({fields} differ)",
            Location("PID", 1, 3),
            code=errors.UNKNOWN_KEY_IDENTIFIER,
            reason=REASON,
        )
        self.mrn = mrn
        self.detail = {
            "mrn": mrn,
            "message": message.as_dict(),
            "chart": chart.as_dict(),
            "differences": [d.as_dict() for d in diffs],
        }


@dataclass
class Gate:
    """The identity rules and what the channel says of its sender."""

    rules: rules.IdentityRules
    channel: str
    authoritative: bool = False
    _rule: rules.Rule | None = field(default=None, repr=False, compare=False)

    def rule(self) -> rules.Rule:
        """The channel's rule (built once per gate: ``for_channel`` merges and validates)."""
        if self._rule is None:
            self._rule = self.rules.for_channel(self.channel)
        return self._rule


def chart_person(conn: Connection, mrn: str) -> rules.Person | None:
    """The person of the chart ``mrn`` now lives under (following merges); None if unknown."""
    row = _resolved(conn, mrn)
    return None if row is None else person_of_row(conn, row)


def _resolved(conn: Connection, mrn: str):
    """The patient row ``mrn`` now lives under (``chart._resolve_row``); None if unknown or if
    the merges form a cycle (as ``resolve_mrn`` says)."""
    from interface.store.chart import _resolve_row

    try:
        return _resolve_row(conn, mrn)
    except PermanentError:
        return None


def _phones_stmt():
    from interface.store.chart import _cached

    t = cs.patient_phones
    return _cached(
        "identity_phones",
        lambda: (select(t.c.number).where(t.c.patient_id == bindparam("b_pid")).order_by(t.c.seq), False),
    )


def _address_stmt():
    from interface.store.chart import _cached

    a = cs.patient_addresses
    return _cached(
        "identity_address",
        lambda: (
            select(a.c.street, a.c.other, a.c.city, a.c.state, a.c.postal_code)
            .where(a.c.patient_id == bindparam("b_pid"))
            .order_by(a.c.seq)
            .limit(1),
            False,
        ),
    )


def person_of_row(conn: Connection, row, *, phones: bool = True, address: bool = True) -> rules.Person:
    """The chart's person from its ``patients`` row (as ``chart._resolve_row`` read it); the
    phones and the first address are read unless ``phones``/``address`` say they are not needed
    (:func:`check` reads them only when the rule compares them, or to show a mismatch)."""
    numbers: list[str] = []
    if phones:
        numbers = [r.number for r in fastsql.run(conn, _phones_stmt(), {"b_pid": row.id}) if r.number]
    addr = fastsql.run(conn, _address_stmt(), {"b_pid": row.id}).first() if address else None
    return rules.Person(
        family=row.family,
        given=row.given,
        middle=row.middle,
        birth_date=row.birth_date,
        sex=row.sex,
        ssn=row.ssn,
        phones=numbers,
        address=" ".join(x for x in addr if x) if addr else None,
        mrn=row.mrn,
    )


def _targets(records: list, kind: str) -> list[str]:
    """The MRNs whose charts the records would change (A47: the prior MRN when the new is unknown)."""
    out: list[str] = []
    for r in records or []:
        mrn = r.mrn if isinstance(r.mrn, str) else None
        if mrn and mrn.strip():
            out.append(mrn.strip())
        merge = getattr(r, "merge", None)
        if kind == "chart" and merge is not None and isinstance(merge.prior_mrn, str) and merge.prior_mrn:
            out.append("?" + merge.prior_mrn.strip())  # only if the PID's MRN is no chart yet
    return list(dict.fromkeys(out))


def filed_anyway(conn: Connection, message_id: int, mrn: str) -> bool:
    return (
        conn.execute(
            select(identity_reviews.c.id).where(
                identity_reviews.c.message_id == message_id,
                identity_reviews.c.mrn == mrn,
                identity_reviews.c.status == "filed_anyway",
            )
        ).first()
        is not None
    )


def check(
    conn: Connection, gate: Gate | None, records: list, message, *, message_id: int, kind: str
) -> dict[str, object]:
    """Raise :class:`IdentityMismatch` when the message's PID names another person than a chart
    its records would change (``kind``: ``chart`` for ADT, ``documents`` for MDM).

    Returns the patient rows it resolved, by the MRN looked up (None: no such chart), for the
    apply that follows in the same transaction to reuse (``chart_apply.apply_updates(...,
    resolved=)``) instead of reading them again. What is compared is what the rule needs: the
    chart's phones are read only when the rule may hold the message over them (``must_agree``,
    ``similar``) and the message has one; the address and the phones are read for the finding
    when the message is held."""
    resolved: dict[str, object] = {}
    if gate is None or message is None or (kind == "chart" and gate.authoritative):
        return resolved
    targets = _targets(records, kind)
    if not targets:
        return resolved
    person: rules.Person | None = None  # read from the PID once a chart is found: a new
    rule = gate.rule()  # patient's message needs none
    need_phones = False
    found_plain = False
    for target in targets:
        fallback = target.startswith("?")
        if fallback and found_plain:
            continue
        mrn = target.lstrip("?")
        row = _resolved(conn, mrn)
        resolved[mrn] = row
        if row is None:
            continue
        found_plain = found_plain or not fallback
        if person is None:
            person = rules.person_from_message(message)
            need_phones = rule.phone.check in ("must_agree", "similar") and any(
                rules.norm_phone(p) for p in person.phones
            )
        chart = person_of_row(conn, row, phones=need_phones, address=False)
        diffs = rules.compare(person, chart, rule)
        if rules.blocking(diffs) and not filed_anyway(conn, message_id, chart.mrn or ""):
            chart = person_of_row(conn, row)  # the whole person, for the clerk's page
            raise IdentityMismatch(chart.mrn or "", person, chart, rules.compare(person, chart, rule))
    return resolved


def record(conn: Connection, item, exc: IdentityMismatch, now: datetime) -> None:
    """Keep what the check found for the item's page (after the item's savepoint rolled back)."""
    conn.execute(
        update(identity_reviews)
        .where(identity_reviews.c.item_id == item.id, identity_reviews.c.status == "mismatch")
        .values(status="superseded")
    )
    conn.execute(
        insert(identity_reviews).values(
            item_id=item.id,
            message_id=item.message_id,
            mrn=exc.mrn,
            status="mismatch",
            detail=json.dumps(exc.detail, sort_keys=True),
            created_at=now,
        )
    )


def review(conn: Connection, item_id: int) -> dict | None:
    """The newest finding for a work item: the row, with ``detail`` read back from JSON."""
    row = conn.execute(
        select(identity_reviews)
        .where(identity_reviews.c.item_id == item_id)
        .order_by(identity_reviews.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    out = dict(row._mapping)
    try:
        out["detail"] = json.loads(row.detail or "{}")
    except ValueError:
        out["detail"] = {}
    return out
