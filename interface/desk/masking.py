"""Masking: which patient data each role sees masked, and how a reveal with a reason is audited.

One rule for every interface — the REST API (``api_messages``, ``api_patients``, ``api_errors``),
the web console (``pages``), the CLI (``interface errors show``) and the FHIR API to come — so
that no door shows more than another:

* **Masked by default, for every role.** In a message: the fields of :data:`MESSAGE_FIELDS`
  (PID identifiers, names, birth date, address, phones, national id; NK1, GT1, IN1/IN2, MRG;
  OBX-5 and NTE-3, the clinical text and document content) become :data:`MASK`. In a chart:
  the national id (``ssn``), every identifier except the MRN, insurance member ids, and the
  chart history's values of those (:data:`HISTORY_MASKED`). Identifiers in lists and keys:
  :func:`mask` (``****5678``).
* **Revealed only with a reason, by a role allowed to** (:data:`REVEAL`): a reveal without a
  reason is refused (400), by a role not allowed (403); each reveal writes one ``audit`` row
  (action ``reveal``, who, when, what, why) before the data is shown (:func:`record_reveal`).

Pure functions plus one audit insert; no web framework here (the web layers map
:class:`RevealRefused` to their own answers).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime

from interface.store import audit as store_audit

MASK = "•••"

# Data kinds a reveal is asked for, and the roles that may reveal each (after seeing it masked).
MESSAGE = "message"
CHART = "chart"
WORK_ITEM = "work_item"
REVEAL: dict[str, frozenset[str]] = {
    "clerk": frozenset({MESSAGE, CHART, WORK_ITEM}),
    "analyst": frozenset({MESSAGE, WORK_ITEM}),
    "admin": frozenset({MESSAGE, CHART, WORK_ITEM}),
    "auditor": frozenset(),  # reads the audit trail, never patient data
    "release": frozenset(),  # release of information: works the ROI desk's requests only
}

# Fields that identify a patient (or carry clinical text): masked until revealed with a reason.
MESSAGE_FIELDS: dict[str, frozenset[int]] = {
    "PID": frozenset({2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 18, 19, 20, 21, 23, 29}),
    "PD1": frozenset({4}),
    "NK1": frozenset({2, 4, 5, 6, 12, 13, 16, 19, 30, 31, 32, 33, 37}),
    "GT1": frozenset({2, 3, 5, 6, 7, 8, 12, 19}),
    "IN1": frozenset({16, 18, 19, 36, 49}),
    "IN2": frozenset(range(1, 73)),
    "MRG": frozenset(range(1, 8)),
    "OBX": frozenset({5}),
    "NTE": frozenset({3}),
    "ZPD": frozenset(range(1, 40)),
}

# Chart history values masked until revealed: these fields, and the tables of identifiers and
# insurance. An ``initial`` entry (a new row's first values, one JSON object) shows its other
# values and masks these keys inside it.
HISTORY_MASKED = ("ssn", "value", "member_id", "identifiers", "insurance")
HISTORY_TABLES = ("patient_identifiers", "insurance")


class RevealRefused(Exception):
    """A reveal that cannot be granted: ``status`` 400 (no reason) or 403 (role may not)."""

    def __init__(self, text: str, status: int):
        super().__init__(text)
        self.status = status


def mask(value: str | None) -> str | None:
    """``12345678`` -> ``****5678``: at most the last 4 characters and never more than half of
    the value stay visible (``100002`` -> ``****002``). ``mrn:...`` keeps its prefix."""
    if not value:
        return value
    prefix, sep, rest = value.partition(":")
    if sep and prefix.isalpha() and rest:
        return prefix + ":" + mask(rest)
    visible = min(4, len(value) // 2)
    return "****" + (value[-visible:] if visible else "")


# -- the decision and its audit ------------------------------------------------------------


def may_reveal(role: str | None, kind: str) -> bool:
    return kind in REVEAL.get(role or "", frozenset())


def check_reveal(role: str | None, kind: str, reveal: bool, reason: str | None) -> str | None:
    """Whether to show ``kind`` unmasked: None (masked, the default) or the stripped reason of a
    granted reveal. Raises :class:`RevealRefused` for a reveal without a reason or by a role
    that may not reveal ``kind``."""
    if not reveal:
        return None
    why = (reason or "").strip()
    if not why:
        raise RevealRefused("reveal=true needs a reason", 400)
    if not may_reveal(role, kind):
        raise RevealRefused(f"role {role or '(none)'} may not reveal {kind} data", 403)
    return why[:1000]


def record_reveal(
    conn,
    *,
    user: str,
    target_type: str,
    target_id: str | int | None,
    reason: str,
    now: datetime,
    detail: str | None = None,
    patient: str | None = None,
) -> None:
    """The audit row of a granted reveal (in the caller's transaction): action ``reveal`` on
    ``target_type`` (``message``, ``patient``, ``work_item``) ``target_id``, with its reason."""
    store_audit.record(
        conn,
        user=user,
        action="reveal",
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        detail=detail,
        now=now,
        patient=patient,
    )


# -- messages --------------------------------------------------------------------------------


def masked_field(segment: str, number: int) -> bool:
    fields = MESSAGE_FIELDS.get(segment)
    return bool(fields) and number in fields


def split_fields(seg_text: str, enc) -> tuple[str, list[str]]:
    """(segment id, fields) with fields[n] = SEG-n (MSH-1 is the field separator)."""
    if seg_text.startswith(("MSH", "FHS", "BHS")):
        parts = seg_text.split(enc.field)
        return seg_text[:3], [parts[0], enc.field] + parts[1:]
    parts = seg_text.split(enc.field)
    return parts[0].strip(), parts


def segments_and_encoding(text: str):
    """The message's segments and its declared encoding (the default when MSH cannot be read)."""
    from interface.hl7.message import Encoding, split_segments, strip_leading

    segs = split_segments(strip_leading(text))
    try:
        enc = Encoding.from_msh(segs[0]) if segs else Encoding()
    except Exception:
        enc = Encoding()
    return segs, enc


def message_text(text: str, reveal: bool) -> str:
    """The message, one segment a line, with the masked fields replaced by :data:`MASK`."""
    segs, enc = segments_and_encoding(text)
    if reveal:
        return "\n".join(segs)
    out = []
    for s in segs:
        name, fields = split_fields(s, enc)
        if name not in MESSAGE_FIELDS:
            out.append(s)
            continue
        fields = [MASK if n > 0 and f and masked_field(name, n) else f for n, f in enumerate(fields)]
        out.append(enc.field.join(fields))
    return "\n".join(out)


def described_segments(segments: list[dict], reveal: bool) -> list[dict]:
    """The API's named segments (``api_messages.describe``) with masked fields' values and
    components replaced by :data:`MASK` (``masked: true``)."""
    if reveal:
        return segments
    out = []
    for seg in segments:
        fields = []
        for f in seg["fields"]:
            if masked_field(seg["name"], f["position"]) and f.get("value"):
                f = {**f, "value": MASK, "masked": True}
                if "repetitions" in f:
                    f["repetitions"] = []
            fields.append(f)
        out.append({**seg, "fields": fields})
    return out


# -- charts ----------------------------------------------------------------------------------


def history_rows(rows: list[dict], reveal: bool) -> list[dict]:
    """Chart history rows (``{table, field, action, old, new}``) with masked values."""
    if reveal:
        return rows
    out = []
    for h in rows:
        if h.get("action") == "initial" and h.get("new"):
            try:
                values = json.loads(h["new"])
            except ValueError:
                values = None
            masked = (
                json.dumps(
                    {k: MASK if k in HISTORY_MASKED and v else v for k, v in values.items()}, sort_keys=True
                )
                if isinstance(values, dict)
                else MASK
            )
            h = {**h, "new": masked}
        elif h.get("field") in HISTORY_MASKED or h.get("table") in HISTORY_TABLES:
            h = {
                **h,
                "old": MASK if h.get("old") else h.get("old"),
                "new": MASK if h.get("new") else h.get("new"),
            }
        out.append(h)
    return out


def chart(record: dict, reveal: bool) -> dict:
    """A chart record (``chart.get_chart``) as the reader may see it: national id, identifiers
    other than the MRN and insurance member ids masked (:func:`mask`), unless revealed."""
    if reveal:
        return record
    c = copy.copy(record)
    mrns = {record.get("mrn"), record.get("requested_mrn"), *(record.get("merged_from") or [])}
    c["ssn"] = mask(record.get("ssn"))
    c["identifiers"] = [
        i if i.get("value") in mrns else {**i, "value": mask(i.get("value"))}
        for i in record.get("identifiers") or []
    ]
    c["insurance"] = [{**i, "member_id": mask(i.get("member_id"))} for i in record.get("insurance") or []]
    if isinstance(record.get("history"), list):
        c["history"] = history_rows(record["history"], False)
    c["masked"] = True
    return c
