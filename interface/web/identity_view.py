"""What the work-item page shows about whose record it is: the chart's patient banner (name,
birth date, sex, MRN), the identity check's finding side by side with the differences marked,
and for an unknown or mismatched patient the candidate charts (interface.desk.candidates)."""

from __future__ import annotations

from interface.desk.masking import MASK

ROWS = (
    ("family", "Family name"),
    ("given", "Given name"),
    ("middle", "Middle name"),
    ("birth_date", "Birth date"),
    ("sex", "Sex"),
    ("ssn_last4", "National id (last four)"),
    ("phone", "Phone"),
)
CANDIDATE_REASONS = ("unknown_patient", "identity_mismatch")


def works_the_desk(request) -> bool:
    """Whether the signed-in user works the identity desk (clerk, admin): sees the chart's patient
    in the banner of any page, as on the chart page itself. Others (analysts) see it masked
    like the message until they reveal it with a reason."""
    from interface.web import auth

    user = getattr(request.state, "user", None)
    return user is not None and (user.role == "admin" or user.role in auth.CHARTS)


def banner(conn, mrn: str | None) -> dict | None:
    """The chart's patient for the page header, or None when the MRN is no chart (yet)."""
    if not mrn:
        return None
    from interface.store.identity_check import chart_person

    p = chart_person(conn, mrn)
    if p is None:
        return None
    return {"family": p.family, "given": p.given, "birth_date": p.birth_date, "sex": p.sex, "mrn": p.mrn}


def banner_for(conn, mrn: str | None, reveal: bool) -> dict | None:
    """:func:`banner` on a page under the message rule of ``interface.desk.masking`` (masked by
    default for every role): name and birth date masked and the MRN masked as ``mask`` does,
    the sex shown, until the page is revealed with a reason. Chart and document pages show the
    banner as the chart does (``masking.chart`` masks none of these four)."""
    from interface.desk import masking

    b = banner(conn, mrn)
    if b is None or reveal:
        return b
    return {
        **b,
        "family": MASK if b["family"] else b["family"],
        "given": None,
        "birth_date": MASK if b["birth_date"] else b["birth_date"],
        "mrn": masking.mask(b["mrn"]),
        "masked": True,
    }


def message_mrn(msg) -> str | None:
    """Whose chart a message is about: the MRN the engine took from it by its channel's MRN rule
    when it stored it (``messages.patient_id``; a copy filed to another chart by the identity desk
    carries that chart's MRN). Merges are followed by :func:`banner`."""
    return msg.patient_id or None


def comparison(finding: dict | None, reveal: bool) -> dict | None:
    """Rows ``{label, message, chart, verdict, why}``: the message side masked until revealed;
    national id and phone never shown, only whether they agree."""
    if finding is None:
        return None
    detail = finding.get("detail") or {}
    msg, chart = detail.get("message") or {}, detail.get("chart") or {}
    diffs = {d["field"]: d for d in detail.get("differences") or []}
    rows = []
    for key, label in ROWS:
        d = diffs.get(key) or (diffs.get("family") if key == "given" and _swapped(diffs) else None)
        if key in ("ssn_last4", "phone"):
            if d is None:
                continue
            m_value = c_value = "(on file)"
        else:
            m_value, c_value = msg.get(key), chart.get(key)
            if not m_value and not c_value:
                continue
            if m_value and not reveal:
                m_value = MASK
        rows.append(
            {
                "field": key,
                "label": label,
                "message": m_value or "–",
                "chart": c_value or "–",
                "verdict": d["verdict"] if d else "same",
                "why": d["why"] if d else "",
            }
        )
    return {
        "mrn": finding.get("mrn"),
        "status": finding.get("status"),
        "decided_by": finding.get("decided_by"),
        "reason": finding.get("reason"),
        "rows": rows,
    }


def _swapped(diffs: dict) -> bool:
    return "order" in (diffs.get("family") or {}).get("why", "")


def context(conn, item, msg, reveal: bool, channels, *, desk: bool = True) -> dict:
    """The page's identity parts for one work item. ``desk``: the user works the identity desk
    (clerk, admin) and sees the chart's patient and the candidate charts as on a chart page;
    anyone else (an analyst working the error queue) sees the banner masked like the message
    until a reveal, and no candidate charts (other patients' details)."""
    from interface.desk import candidates
    from interface.desk.errorqueue import ActionError
    from interface.store.identity_check import review

    finding = review(conn, item.id) if item.reason == "identity_mismatch" or item.status != "error" else None
    if finding is not None and item.reason != "identity_mismatch" and finding["status"] == "mismatch":
        finding = None  # an old finding the item has since moved past
    found = []
    if desk and item.status in ("error", "held") and item.reason in CANDIDATE_REASONS:
        try:
            found = candidates.candidates(conn, item.id, channels=channels, limit=8)
        except ActionError:
            found = []
    return {
        "patient": (banner if desk else lambda c, m: banner_for(c, m, reveal))(
            conn, (finding or {}).get("mrn") or msg.patient_id
        ),
        "identity": comparison(finding, reveal),
        "candidates": found,
        "mismatch": item.status == "error" and item.reason == "identity_mismatch",
        "desk": desk,
    }
