"""The release-of-information desk: requests for a patient's information, from receipt to release.

A request names the patient (the MRN found by search; a merged-away MRN is filed under the
survivor), the requester and their type, what is asked (``scope``), the purpose and the delivery,
and the day it was received. Its due date, fee and legal basis come from ``rules/roi.yaml``
(:mod:`interface.rules.roi`). Status::

    received -> verifying -> in_progress -> ready -> released
                    (or denied with a reason, or withdrawn, from any open status)

Every change is a ``roi_events`` row (who, when, from, to, note). Moving to ``in_progress``
needs the requester's identity verified (the checklist); a release (``interface.desk.roi_release``)
needs the request ``ready`` (or already released: releasing again makes a new packet) and, when
its basis is an authorization, an authorization with every 164.508(c) element, not expired and
not revoked — what is missing is named.

Functions work in the caller's transaction and raise :class:`RoiError` (``kind``: ``not_found``,
``invalid``, ``conflict``) for what cannot be done; auditing is the caller's (web, CLI), with the
request's MRN.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from interface.rules import roi as rules
from interface.rules.roi import RoiSettings
from interface.store import chart, content
from interface.store import roi as store
from interface.store.chart_read import get_chart

FORM_TYPES = {
    b"%PDF": "application/pdf",
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
    b"GIF8": "image/gif",
}
MAX_FORM_BYTES = 20 * 1024 * 1024
SCOPE_KEYS = ("designated_record_set", "from", "to", "encounters", "document_types")
REVIEW_RIGHT = (
    "You may ask to have this denial reviewed by a licensed health care professional chosen by the "
    "hospital who did not take part in the decision (45 CFR 164.524(a)(4)). Write to the Health "
    "Information Management department within 60 days."
)


class RoiError(ValueError):
    """A request that cannot be done; ``kind`` is not_found, invalid or conflict."""

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


def _choice(value: str | None, known: dict, what: str) -> str:
    v = (value or "").strip()
    if v not in known:
        raise RoiError(f"{what} must be one of {', '.join(known)}")
    return v


def _text(value: Any, what: str, limit: int = 250, required: bool = False) -> str | None:
    v = value.strip() if isinstance(value, str) else None
    if required and not v:
        raise RoiError(f"{what} is required")
    if v and len(v) > limit:
        raise RoiError(f"{what} is longer than {limit} characters")
    return v or None


def _day(value: Any, what: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise RoiError(f"{what} must be a date (YYYY-MM-DD)") from None


def clean_scope(scope: dict | None) -> dict:
    """``{designated_record_set, from, to, encounters, document_types}``: the designated record
    set, or a date range and/or visit numbers and/or document types (TXA-2 codes)."""
    scope = dict(scope or {})
    unknown = set(scope) - set(SCOPE_KEYS)
    if unknown:
        raise RoiError(f"unknown scope key(s): {', '.join(sorted(unknown))}")
    start, end = _day(scope.get("from"), "scope from"), _day(scope.get("to"), "scope to")
    if start and end and end < start:
        raise RoiError("the scope's date range ends before it starts")
    out = {
        "designated_record_set": bool(scope.get("designated_record_set")),
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "encounters": [str(e).strip() for e in scope.get("encounters") or [] if str(e).strip()],
        "document_types": [
            str(t).strip().upper() for t in scope.get("document_types") or [] if str(t).strip()
        ],
    }
    if not out["designated_record_set"] and not (
        out["from"] or out["to"] or out["encounters"] or out["document_types"]
    ):
        raise RoiError(
            "say what is asked: the designated record set, a date range, encounters or document types"
        )
    return out


def scope_text(scope: dict) -> str:
    if scope.get("designated_record_set"):
        return "The designated record set"
    parts = []
    if scope.get("from") or scope.get("to"):
        parts.append(f"dates {scope.get('from') or 'any'} to {scope.get('to') or 'any'}")
    if scope.get("encounters"):
        parts.append("encounters " + ", ".join(scope["encounters"]))
    if scope.get("document_types"):
        parts.append("document types " + ", ".join(scope["document_types"]))
    return "; ".join(parts).capitalize()


# -- requests ---------------------------------------------------------------------------------


def new_request(
    conn,
    settings: RoiSettings,
    *,
    mrn: str,
    requester_type: str,
    requester_name: str,
    scope: dict,
    purpose: str,
    delivery: str,
    received_on: date | str,
    user: str,
    now: datetime,
    requester_organization: str | None = None,
    requester_address: str | None = None,
    requester_email: str | None = None,
    requester_phone: str | None = None,
    purpose_text: str | None = None,
    state: str | None = None,
    summary_page: bool = False,
) -> int:
    """Log a request (status ``received``); returns its id."""
    found = chart.resolve_mrn(conn, (mrn or "").strip()) if (mrn or "").strip() else None
    if found is None:
        raise RoiError("no patient with this MRN", "not_found")
    rtype = _choice(requester_type, rules.REQUESTER_TYPES, "requester type")
    purp = _choice(purpose, rules.PURPOSES, "purpose")
    deliv = _choice(delivery, rules.DELIVERIES, "delivery")
    received = _day(received_on, "date received")
    if received is None:
        raise RoiError("date received is required")
    if received > now.date():
        raise RoiError("date received is in the future")
    email = _text(requester_email, "e-mail")
    if deliv == "email" and not email:
        raise RoiError("delivery by e-mail needs the requester's e-mail address")
    address = _text(requester_address, "address", 1000)
    if deliv == "mail" and not address:
        raise RoiError("delivery by mail needs the requester's address")
    st = (_text(state, "state", 8) or "").upper() or None
    values = {
        "mrn": found,
        "requester_type": rtype,
        "requester_name": _text(requester_name, "requester name", required=True),
        "requester_organization": _text(requester_organization, "organisation"),
        "requester_address": address,
        "requester_email": email,
        "requester_phone": _text(requester_phone, "phone", 64),
        "identity_checks": {},
        "scope": clean_scope(scope),
        "purpose": purp,
        "purpose_text": _text(purpose_text, "purpose", 2000),
        "delivery": deliv,
        "state": st,
        "received_on": received,
        "due_on": rules.due_date(settings, received, rtype, st),
        "extensions": 0,
        "basis": rules.legal_basis(settings, rtype, purp),
        "status": "received",
        "summary_page": 1 if summary_page else 0,
        "created_by": user,
        "created_at": now,
        "updated_at": now,
    }
    request_id = store.insert_request(conn, values)
    store.add_event(conn, request_id, at=now, user=user, action="received", to_status="received")
    return request_id


def get(conn, request_id: int, *, for_update: bool = False) -> dict:
    req = store.get_request(conn, request_id, for_update=for_update)
    if req is None:
        raise RoiError(f"no request {request_id}", "not_found")
    return req


def _labels(settings: RoiSettings, req: dict, today: date) -> dict:
    fee = rules.fee(
        settings,
        delivery=req["delivery"],
        purpose=req["purpose"],
        requester_type=req["requester_type"],
        pages=None,
    )
    return {
        **req,
        "requester_type_label": rules.REQUESTER_TYPES.get(req["requester_type"], req["requester_type"]),
        "purpose_label": rules.PURPOSES.get(req["purpose"], req["purpose"]),
        "delivery_label": rules.DELIVERIES.get(req["delivery"], req["delivery"]),
        "status_label": rules.STATUSES.get(req["status"], req["status"]),
        "basis_label": rules.BASES.get(req["basis"], req["basis"]),
        "scope_text": scope_text(req["scope"]),
        "fee_estimate": fee,
        **rules.aging(req["received_on"], req["due_on"], today, req["status"]),
    }


def queue(
    conn, settings: RoiSettings, today: date, *, statuses=None, mrn: str | None = None, limit: int = 200
) -> list[dict]:
    """Requests (default: the open ones), soonest due first, each with its aging and overdue flag."""
    rows = store.list_requests(conn, statuses=statuses or rules.OPEN, mrn=mrn, limit=limit)
    return [_labels(settings, r, today) for r in rows]


def patient_of(conn, mrn: str) -> dict:
    """Who the request is about, for the banner and the cover letter."""
    c = get_chart(conn, mrn) or {}
    name = c.get("name") or {}
    addresses = c.get("addresses") or []
    return {
        "mrn": mrn,
        "family": name.get("family"),
        "given": name.get("given"),
        "birth_date": c.get("birth_date"),
        "sex": c.get("sex"),
        "address": addresses[0] if addresses else None,
    }


def view(conn, settings: RoiSettings, request_id: int, today: date) -> dict:
    """One request with its labels, aging, fee estimate, events, authorization (and what it
    lacks), identity checks still missing, packets and disclosures."""
    req = _labels(settings, get(conn, request_id), today)
    auth = store.get_authorization(conn, req["authorization_id"]) if req["authorization_id"] else None
    req["authorization"] = authorization_view(settings, auth, today) if auth else None
    req["identity_missing"] = rules.identity_problems(settings, req["requester_type"], req["identity_checks"])
    req["identity_required"] = settings.identity.required.get(req["requester_type"], ["photo_id"])
    req["events"] = store.events(conn, request_id)
    req["packets"] = store.packets_for(conn, request_id)
    req["disclosures"] = store.disclosures(conn, request_id=request_id)
    req["release_problems"] = release_problems(conn, settings, req, today)
    req["patient"] = patient_of(conn, req["mrn"])
    return req


def _move(
    conn, req: dict, to: str, user: str, now: datetime, action: str, note: str | None = None, **values
) -> None:
    store.update_request(conn, req["id"], {"status": to, "updated_at": now, **values})
    store.add_event(
        conn, req["id"], at=now, user=user, action=action, from_status=req["status"], to_status=to, note=note
    )


def verify_identity(
    conn, settings: RoiSettings, request_id: int, checks: dict[str, bool], *, user: str, now: datetime
) -> list[str]:
    """Record the identity checklist (a received request moves to ``verifying``); returns the
    required checks still missing (none: the identity is verified)."""
    req = get(conn, request_id, for_update=True)
    if req["status"] not in rules.OPEN:
        raise RoiError(f"the request is {req['status']}", "conflict")
    unknown = set(checks) - set(rules.IDENTITY_CHECKS)
    if unknown:
        raise RoiError(f"unknown identity check(s): {', '.join(sorted(unknown))}")
    ticked = {k: bool(v) for k, v in checks.items() if v}
    missing = rules.identity_problems(settings, req["requester_type"], ticked)
    values: dict[str, Any] = {
        "identity_checks": ticked,
        "identity_verified_by": None if missing else user,
        "identity_verified_at": None if missing else now,
    }
    note = "identity verified" if not missing else "identity checks recorded; missing: " + "; ".join(missing)
    if req["status"] == "received":
        _move(conn, req, "verifying", user, now, "verify", note, **values)
    else:
        store.update_request(conn, request_id, {**values, "updated_at": now})
        store.add_event(conn, request_id, at=now, user=user, action="verify", note=note)
    return missing


def set_status(
    conn,
    settings: RoiSettings,
    request_id: int,
    to: str,
    *,
    user: str,
    now: datetime,
    note: str | None = None,
) -> None:
    """Move a request along (``verifying``, ``in_progress``, ``ready``, back a step, or
    ``withdrawn``); ``denied`` is :func:`deny`, ``released`` a release."""
    req = get(conn, request_id, for_update=True)
    to = _choice(to, rules.STATUSES, "status")
    if to == "released":
        raise RoiError("a request is released by releasing it (a packet is built and logged)", "conflict")
    if to == "denied":
        raise RoiError("a denial needs its reason: use deny", "conflict")
    if to not in rules.TRANSITIONS[req["status"]]:
        raise RoiError(
            f"a request {rules.STATUSES[req['status']].lower()} cannot become {rules.STATUSES[to].lower()}",
            "conflict",
        )
    if to in ("in_progress", "ready") and req["identity_verified_at"] is None:
        missing = rules.identity_problems(settings, req["requester_type"], req["identity_checks"])
        raise RoiError("the requester's identity is not verified: " + "; ".join(missing), "conflict")
    if to == "withdrawn" and not (note or "").strip():
        raise RoiError("say why the request is withdrawn")
    _move(conn, req, to, user, now, "status", _text(note, "note", 2000))


def deny(
    conn, request_id: int, reason: str, *, user: str, now: datetime, reviewable: bool | None = None
) -> None:
    """Deny a request with its reason. For an individual's own access the denial tells the
    patient their right to have it reviewed (``reviewable``: default yes for a patient or their
    representative; False for the unreviewable grounds of 164.524(a)(1)-(2))."""
    req = get(conn, request_id, for_update=True)
    if "denied" not in rules.TRANSITIONS[req["status"]]:
        raise RoiError(f"the request is {req['status']}", "conflict")
    why = _text(reason, "reason", 2000, required=True)
    own = req["requester_type"] in ("patient", "personal_representative")
    review = REVIEW_RIGHT if (own if reviewable is None else reviewable and own) else None
    _move(conn, req, "denied", user, now, "deny", why, denial_reason=why, review_right=review)


def extend(conn, settings: RoiSettings, request_id: int, reason: str, *, user: str, now: datetime) -> date:
    """Extend the due date once by ``extension_days`` (45 CFR 164.524(b)(2)(iii)), with the
    reason; returns the new due date."""
    req = get(conn, request_id, for_update=True)
    if req["status"] not in rules.OPEN:
        raise RoiError(f"the request is {req['status']}", "conflict")
    problem = rules.extension_problem(settings, req["extensions"], reason)
    if problem:
        raise RoiError(problem, "conflict" if (reason or "").strip() else "invalid")
    new_due = req["due_on"] + timedelta(days=settings.due.extension_days)
    store.update_request(
        conn,
        request_id,
        {
            "due_on": new_due,
            "extensions": req["extensions"] + 1,
            "extension_reason": reason.strip(),
            "updated_at": now,
        },
    )
    store.add_event(
        conn,
        request_id,
        at=now,
        user=user,
        action="extend",
        note=f"due {new_due.isoformat()}: {reason.strip()}",
    )
    return new_due


# -- authorizations ---------------------------------------------------------------------------

CHECKLIST_TEXT = (
    "description",
    "discloser",
    "recipient",
    "purpose",
    "expiry_event",
    "signed_by",
    "representative_authority",
)
CHECKLIST_FLAGS = (
    "signed_by_representative",
    "revocation_statement",
    "conditioning_statement",
    "redisclosure_statement",
    "expiry_event_occurred",
)


def form_media_type(data: bytes) -> str:
    for magic, media in FORM_TYPES.items():
        if data.startswith(magic):
            return media
    raise RoiError("the signed form must be a PDF or an image (PNG, JPEG, TIFF, GIF)")


def authorize(
    conn,
    settings: RoiSettings,
    request_id: int,
    checklist: dict,
    *,
    user: str,
    now: datetime,
    store_: content.ContentStore,
    categories: list[str] | None = None,
    form: bytes | None = None,
    form_name: str | None = None,
) -> dict:
    """Record the authorization of a request (its 164.508(c) checklist, the sensitive categories
    it names, the signed form kept in the content store); returns it with its problems."""
    req = get(conn, request_id, for_update=True)
    if req["status"] not in rules.OPEN and req["status"] != "released":
        raise RoiError(f"the request is {req['status']}", "conflict")
    unknown = set(checklist) - set(CHECKLIST_TEXT) - set(CHECKLIST_FLAGS) - {"expires_on", "signed_on"}
    if unknown:
        raise RoiError(f"unknown authorization field(s): {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {k: _text(checklist.get(k), k.replace("_", " "), 2000) for k in CHECKLIST_TEXT}
    clean.update({k: bool(checklist.get(k)) for k in CHECKLIST_FLAGS})
    for k in ("expires_on", "signed_on"):
        d = _day(checklist.get(k), k.replace("_", " "))
        clean[k] = d.isoformat() if d else None
    previous = store.get_authorization(conn, req["authorization_id"]) if req["authorization_id"] else None
    values: dict[str, Any] = {
        "mrn": req["mrn"],
        "request_id": request_id,
        "checklist": clean,
        "categories": sorted({c.strip() for c in categories or [] if c and c.strip()}),
        "expires_on": _day(clean["expires_on"], "expires on"),
        "recorded_by": user,
        "recorded_at": now,
    }
    if form:
        if len(form) > MAX_FORM_BYTES:
            raise RoiError(f"the signed form is larger than {MAX_FORM_BYTES // (1024 * 1024)} MiB")
        values["form_media_type"] = form_media_type(form)
        values["form_sha256"] = store_.put(conn, form, now)
        values["form_name"] = _text(form_name, "file name") or "signed-authorization"
    elif previous is not None and previous.get("form_sha256"):  # a corrected checklist keeps the form
        values.update({k: previous[k] for k in ("form_sha256", "form_media_type", "form_name")})
    auth_id = store.insert_authorization(conn, values)
    store.update_request(
        conn, request_id, {"authorization_id": auth_id, "basis": "authorization", "updated_at": now}
    )
    auth = store.get_authorization(conn, auth_id) or {}
    view_ = authorization_view(settings, auth, now.date())
    note = "complete" if not view_["problems"] else "; ".join(p["text"] for p in view_["problems"])
    store.add_event(
        conn, request_id, at=now, user=user, action="authorization", note=f"authorization {auth_id}: {note}"
    )
    return view_


def revoke(conn, request_id: int, revoked_on: date | str, reason: str, *, user: str, now: datetime) -> None:
    """The patient revoked the request's authorization (in writing) on ``revoked_on``."""
    req = get(conn, request_id, for_update=True)
    if not req["authorization_id"]:
        raise RoiError("the request has no authorization", "conflict")
    day = _day(revoked_on, "revoked on") or now.date()
    why = _text(reason, "reason", 2000, required=True)
    store.update_authorization(conn, req["authorization_id"], {"revoked_on": day, "revoked_reason": why})
    store.add_event(
        conn, request_id, at=now, user=user, action="revoke", note=f"revoked {day.isoformat()}: {why}"
    )


def authorization_view(settings: RoiSettings, auth: dict, today: date) -> dict:
    flat = {
        **auth["checklist"],
        "form_sha256": auth.get("form_sha256"),
        "revoked_on": auth.get("revoked_on"),
    }
    return {
        **auth,
        "problems": rules.authorization_problems(settings, flat, today),
        "elements": [
            {"element": e, "label": rules.ELEMENTS[e]} for e in settings.authorization.required_elements
        ],
    }


def release_problems(conn, settings: RoiSettings, req: dict, today: date) -> list[dict]:
    """What blocks a release of this request now: ``[{element, text}]``."""
    out = []
    if req["status"] not in ("ready", "released"):
        out.append(
            {
                "element": "status",
                "text": f"The request is {rules.STATUSES[req['status']].lower()}, not ready",
            }
        )
    if req["identity_verified_at"] is None:
        out.append({"element": "identity", "text": "The requester's identity is not verified"})
    if req["basis"] == "authorization":
        auth = store.get_authorization(conn, req["authorization_id"]) if req["authorization_id"] else None
        out.extend(
            authorization_view(settings, auth, today)["problems"]
            if auth
            else rules.authorization_problems(settings, None, today)
        )
    return out


# -- the disclosure log and accounting --------------------------------------------------------


def log_disclosure(
    conn,
    *,
    mrn: str,
    disclosed_on: date | str,
    recipient_name: str,
    recipient_type: str,
    purpose: str,
    basis: str,
    description: str,
    user: str,
    now: datetime,
    recipient_address: str | None = None,
) -> int:
    """A disclosure made outside the engine (a phone call to public health, a paper copy sent
    before the engine), entered by hand."""
    found = chart.resolve_mrn(conn, (mrn or "").strip()) if (mrn or "").strip() else None
    if found is None:
        raise RoiError("no patient with this MRN", "not_found")
    day = _day(disclosed_on, "disclosed on")
    if day is None or day > now.date():
        raise RoiError("disclosed on must be a date, not in the future")
    return store.insert_disclosure(
        conn,
        {
            "mrn": found,
            "disclosed_on": day,
            "recipient_name": _text(recipient_name, "recipient", required=True),
            "recipient_address": _text(recipient_address, "address", 1000),
            "recipient_type": _choice(recipient_type, rules.REQUESTER_TYPES, "recipient type"),
            "purpose": _text(purpose, "purpose", 2000, required=True),
            "basis": _choice(basis, rules.BASES, "legal basis"),
            "description": _text(description, "what was disclosed", 4000, required=True),
            "source": "manual",
            "recorded_by": user,
            "recorded_at": now,
        },
    )


def _disclosure_json(d: dict) -> dict:
    return {
        **{k: d[k] for k in ("id", "mrn", "request_id", "packet_id", "recipient_name", "recipient_address")},
        "disclosed_on": d["disclosed_on"].isoformat(),
        "recipient_type": d["recipient_type"],
        "recipient_type_label": rules.REQUESTER_TYPES.get(d["recipient_type"], d["recipient_type"]),
        "purpose": d["purpose"],
        "basis": d["basis"],
        "basis_label": rules.BASES.get(d["basis"], d["basis"]),
        "authorization_id": d["authorization_id"],
        "description": d["description"],
        "manifest": d["manifest"],
        "packet_sha256": d["packet_sha256"],
        "source": d["source"],
        "recorded_by": d["recorded_by"],
        "recorded_at": d["recorded_at"].isoformat(),
    }


def disclosure_log(conn, mrn: str, start: date | None = None, end: date | None = None) -> list[dict]:
    """Every disclosure of the patient (and of MRNs merged into theirs), oldest first."""
    found = chart.resolve_mrn(conn, mrn) or mrn
    mrns = [found, *chart._merged_from(conn, found)]
    return [_disclosure_json(d) for d in store.disclosures(conn, mrns=mrns, start=start, end=end)]


def accounting(
    conn,
    settings: RoiSettings,
    mrn: str,
    *,
    start: date | str | None,
    end: date | str | None,
    today: date,
    user: str,
    now: datetime,
    record: bool = True,
) -> dict:
    """The accounting of disclosures (45 CFR 164.528) of a patient for a period of at most six
    years: the disclosures to account for, and how many others the rules leave out. Recorded in
    the disclosure log itself (to the individual, so it is not accounted for in turn)."""
    found = chart.resolve_mrn(conn, (mrn or "").strip()) if (mrn or "").strip() else None
    if found is None:
        raise RoiError("no patient with this MRN", "not_found")
    try:
        first, last = rules.accounting_period(settings, _day(start, "from"), _day(end, "to"), today)
    except ValueError as exc:
        raise RoiError(str(exc)) from None
    mrns = [found, *chart._merged_from(conn, found)]
    every = store.disclosures(conn, mrns=mrns, start=first, end=last)
    every = [d for d in every if d["source"] != "accounting"]
    counted = rules.accountable(settings, every, first, last)
    result = {
        "mrn": found,
        "patient": patient_of(conn, found),
        "from": first.isoformat(),
        "to": last.isoformat(),
        "generated_at": now.isoformat(),
        "disclosures": [_disclosure_json(d) for d in counted],
        "excluded": len(every) - len(counted),
        "excluded_bases": [rules.BASES[b] for b in settings.accounting.exclude_bases],
    }
    if record:
        result["record_id"] = store.insert_disclosure(
            conn,
            {
                "mrn": found,
                "disclosed_on": today,
                "recipient_name": "The patient (accounting of disclosures)",
                "recipient_type": "patient",
                "purpose": "Accounting of disclosures (45 CFR 164.528)",
                "basis": "individual_access",
                "description": f"Accounting of {len(counted)} disclosure(s) from {first.isoformat()} to {last.isoformat()}",
                "manifest": {"disclosure_ids": [d["id"] for d in counted]},
                "source": "accounting",
                "recorded_by": user,
                "recorded_at": now,
            },
        )
    return result


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
