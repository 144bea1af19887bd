"""Releasing a request: which documents go (and which do not, and why), the packet, the
disclosure record; the accounting letter.

:func:`candidates` lists the patient's documents (and those of MRNs merged into theirs) with
what the request's scope and authorization make of each: ``selected`` by default when it is in
scope, live (not cancelled or obsolete), has content, and falls in no sensitive category the
authorization does not name (:mod:`interface.rules.sensitivity`); otherwise ``excluded`` with the
reasons. :func:`release` checks the request may be released (``desk.roi.release_problems``),
builds the packet through :mod:`interface.desk.roi_packet` from the chosen documents (pages left
out with a reason), keeps it in the content store and the ``roi_packets`` table (never changed:
releasing again makes a new packet), writes the disclosure record and marks the request released.
:func:`preview` builds the same packet marked "PREVIEW — not released" on every page and keeps
nothing: no packet, no disclosure, no change to the request.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import select

from interface.desk import roi, roi_packet
from interface.desk.roi import RoiError
from interface.rules import roi as rules
from interface.rules import sensitivity
from interface.rules.roi import RoiSettings
from interface.store import audit as store_audit
from interface.store import chart, content
from interface.store import roi as store
from interface.store.chart_read import get_chart
from interface.store.document_schema import documents

PDF_TYPES = ("application/pdf", "text/plain", "text/x-hl7-ft")


def _day(value: str | None) -> str | None:
    """``YYYY-MM-DD`` of an ISO or HL7 timestamp."""
    v = (value or "").strip()
    if len(v) >= 8 and v[:8].isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:8]}"
    return v[:10] or None


def _authorized_categories(conn, req: dict) -> list[str]:
    if req["basis"] != "authorization" or not req["authorization_id"]:
        return []
    auth = store.get_authorization(conn, req["authorization_id"]) or {}
    return list(auth.get("categories") or [])


def _scope_reasons(scope: dict, doc: dict) -> list[str]:
    if scope.get("designated_record_set"):
        return []
    out = []
    day = _day(doc["activity_at"]) or _day(doc["origination_at"])
    if scope.get("from") and (day is None or day < scope["from"]):
        out.append(f"dated {day or 'unknown'}, before {scope['from']}")
    if scope.get("to") and (day is None or day > scope["to"]):
        out.append(f"dated {day or 'unknown'}, after {scope['to']}")
    if scope.get("encounters") and doc["visit_number"] not in scope["encounters"]:
        out.append("not of an encounter asked for")
    if scope.get("document_types") and (doc["type"] or "").upper() not in scope["document_types"]:
        out.append(f"document type {doc['type'] or '(none)'} not asked for")
    return ["Out of scope: " + r for r in out]


def candidates(conn, req: dict, sensitivity_rules: Any = None) -> list[dict]:
    """Every document of the patient with ``selected`` (the default choice), ``excluded``
    (reasons, in words), ``categories`` and ``sensitive`` (excluded for a category the
    authorization does not name)."""
    mrns = [req["mrn"], *chart._merged_from(conn, req["mrn"])]
    authorized = _authorized_categories(conn, req)
    rows = conn.execute(
        select(documents).where(documents.c.mrn.in_(mrns)).order_by(documents.c.activity_at, documents.c.id)
    ).mappings()
    out = []
    for d in rows:
        categories = sorted(sensitivity.classify(d["type"], d["confidentiality"], sensitivity_rules))
        blocked = sensitivity.excluded_from_release(categories, authorized, sensitivity_rules)
        reasons = _scope_reasons(req["scope"], dict(d))
        availability = (d["availability"] or "").upper()
        if availability == "CA":
            reasons.append("Cancelled (T11)")
        elif availability == "OB":
            reasons.append("Obsolete: replaced by a newer document")
        if not d["content_sha256"] or d["content_kind"] == "reference":
            reasons.append("No stored content (not received yet, or a reference only)")
        reasons.extend(
            f"Sensitive ({sensitivity.label(cat, sensitivity_rules)}): {why}" for cat, why in blocked
        )
        out.append(
            {
                "document_number": d["document_number"],
                "namespace": d["authority"] or None,
                "key": _key(d["document_number"], d["authority"]),
                "type": d["type"],
                "date": _day(d["activity_at"]) or _day(d["origination_at"]),
                "visit_number": d["visit_number"],
                "version": d["version"],
                "content_type": d["content_type"],
                "content_sha256": d["content_sha256"],
                "confidentiality": d["confidentiality"],
                "categories": categories,
                "sensitive": bool(blocked),
                "excluded": reasons,
                "selected": not reasons,
            }
        )
    return out


def _key(number: str, authority: str | None) -> str:
    return f"{number}^{authority}" if authority else number


def _media(content_type: str | None) -> str:
    media = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    return media


def _packet_documents(
    conn, chosen: list[dict], store_: content.ContentStore, page_exclusions: dict[str, list[tuple[int, str]]]
) -> list[roi_packet.PacketDocument]:
    out = []
    for c in chosen:
        data = store_.get(conn, c["content_sha256"])
        if data is None:
            raise RoiError(
                f"the content of document {c['document_number']} is missing from the store", "conflict"
            )
        out.append(
            roi_packet.PacketDocument(
                document_number=c["document_number"],
                version=c["version"],
                title=c["type"] or "Document",
                document_date=date.fromisoformat(c["date"]) if c["date"] and len(c["date"]) == 10 else None,
                content_type=_media(c["content_type"]),
                data=data,
                sha256=c["content_sha256"],
                excluded_pages=tuple(page_exclusions.get(c["key"], ())),
            )
        )
    return out


def _summary(conn, mrn: str) -> roi_packet.ChartSummary:
    c = get_chart(conn, mrn) or {}
    name = c.get("name") or {}
    demo = [
        f"Name: {name.get('family') or ''}, {name.get('given') or ''}",
        f"Birth date: {c.get('birth_date') or 'unknown'}",
        f"Sex: {c.get('sex') or 'unknown'}",
        f"MRN: {mrn}",
    ]
    visits = [
        f"{v.get('visit_number') or '-'}: {v.get('class') or ''} admitted {v.get('admitted_at') or '?'}"
        f"{', discharged ' + v['discharged_at'] if v.get('discharged_at') else ''}"
        for v in c.get("visits") or []
    ]
    allergies = [
        f"{a.get('description') or a.get('code') or '?'}{' (' + a['reaction'] + ')' if a.get('reaction') else ''}"
        for a in c.get("allergies") or []
    ]
    diagnoses = [
        f"{d.get('code') or ''} {d.get('description') or ''}".strip() for d in c.get("diagnoses") or []
    ]
    return roi_packet.ChartSummary(tuple(demo), tuple(visits), tuple(allergies), tuple(diagnoses))


def _address_lines(text: str | None) -> tuple[str, ...]:
    return tuple(line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip())


def _cover(
    req: dict, patient: dict, fee: dict, released_on: date, released_by: str
) -> roi_packet.CoverLetter:
    basis = rules.BASES.get(req["basis"], req["basis"])
    if req["basis"] == "authorization" and req["authorization_id"]:
        basis = f"{basis}, authorization {req['authorization_id']}"
    recipient = req["requester_name"] + (
        f", {req['requester_organization']}" if req["requester_organization"] else ""
    )
    birth = patient.get("birth_date")
    return roi_packet.CoverLetter(
        request_id=str(req["id"]),
        patient_name=f"{patient.get('family') or ''}, {patient.get('given') or ''}".strip(", "),
        mrn=req["mrn"],
        birth_date=date.fromisoformat(birth) if birth and len(birth) == 10 else None,
        requester_name=req["requester_name"],
        recipient_name=recipient,
        recipient_address=_address_lines(req["requester_address"])
        or ((req["requester_email"],) if req["requester_email"] else ()),
        purpose=rules.PURPOSES.get(req["purpose"], req["purpose"])
        + (f": {req['purpose_text']}" if req["purpose_text"] else ""),
        scope=roi.scope_text(req["scope"]),
        delivery=rules.DELIVERIES.get(req["delivery"], req["delivery"]),
        fees=tuple((i["label"], Decimal(i["cents"]) / 100) for i in fee["items"]),
        released_on=released_on,
        released_by=released_by,
        legal_basis_or_authorization=basis,
    )


def _choose(cands: list[dict], selected: Iterable[str] | None) -> list[dict]:
    if selected is None:
        return [c for c in cands if c["selected"]]
    by_key = {c["key"]: c for c in cands}
    by_number: dict[str, list[dict]] = {}
    for c in cands:
        by_number.setdefault(c["document_number"], []).append(c)
    chosen = []
    for s in selected:
        c = by_key.get(s)
        if c is None:
            same = by_number.get(s, [])
            if len(same) != 1:
                raise RoiError(
                    f"document {s}: {'several documents have this number' if same else 'not a document of the patient'}"
                )
            c = same[0]
        if c["excluded"]:
            raise RoiError(
                f"document {c['document_number']} cannot be released: {'; '.join(c['excluded'])}", "conflict"
            )
        if c not in chosen:
            chosen.append(c)
    return chosen


def _clean_exclusions(page_exclusions: dict | None, chosen: list[dict]) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    keys = {c["key"]: c["key"] for c in chosen} | {c["document_number"]: c["key"] for c in chosen}
    for doc, pages in (page_exclusions or {}).items():
        if doc not in keys:
            raise RoiError(f"page exclusions for document {doc}, which is not released")
        for page, reason in pages:
            if not isinstance(page, int) or page < 1:
                raise RoiError(f"document {doc}: page numbers start at 1")
            if not str(reason or "").strip():
                raise RoiError(f"document {doc}, page {page}: say why the page is left out")
            out.setdefault(keys[doc], []).append((page, str(reason).strip()))
    return out


def build(
    conn,
    settings: RoiSettings,
    req: dict,
    *,
    store_: content.ContentStore,
    released_on: date,
    released_by: str,
    selected: Iterable[str] | None = None,
    page_exclusions: dict | None = None,
    sensitivity_rules: Any = None,
    preview: bool = False,
) -> tuple[roi_packet.Packet, dict, list[dict]]:
    """Build (not store) the packet of a request: (packet, fee, chosen documents); ``preview``:
    the same pages marked as a preview (``roi_packet.build_packet``)."""
    cands = candidates(conn, req, sensitivity_rules)
    chosen = _choose(cands, selected)
    if not chosen:
        raise RoiError("no document to release: choose at least one", "conflict")
    exclusions = _clean_exclusions(page_exclusions, chosen)
    docs = _packet_documents(conn, chosen, store_, exclusions)
    patient = roi.patient_of(conn, req["mrn"])
    summary = _summary(conn, req["mrn"]) if req["summary_page"] else None

    def fee_for(pages: int | None) -> dict:
        return rules.fee(
            settings,
            delivery=req["delivery"],
            purpose=req["purpose"],
            requester_type=req["requester_type"],
            pages=pages,
        )

    fee = fee_for(None)

    def packet_for(fee: dict) -> roi_packet.Packet:
        cover = _cover(req, patient, fee, released_on, released_by)
        return roi_packet.build_packet(cover, docs, summary, preview=preview)

    packet = packet_for(fee)
    if req["delivery"] not in rules.ELECTRONIC and fee_for(packet.page_count) != fee:
        fee = fee_for(packet.page_count)  # paper by the page: the fee counts the packet's pages
        packet = packet_for(fee)
    return packet, fee, chosen


def manifest_json(packet: roi_packet.Packet, chosen: list[dict]) -> dict:
    return {
        "page_count": packet.page_count,
        "documents": [
            {**asdict(m), "excluded_pages": [list(p) for p in m.excluded_pages]} for m in packet.manifest
        ],
        "keys": [c["key"] for c in chosen],
    }


def _releasable(conn, settings: RoiSettings, req: dict, today: date) -> None:
    problems = roi.release_problems(conn, settings, req, today)
    if problems:
        raise RoiError("cannot release: " + "; ".join(p["text"] for p in problems), "conflict")


def preview(
    conn,
    settings: RoiSettings,
    request_id: int,
    *,
    user: str,
    now: datetime,
    store_: content.ContentStore,
    selected: Iterable[str] | None = None,
    page_exclusions: dict | None = None,
    sensitivity_rules: Any = None,
) -> roi_packet.Packet:
    """The packet a release would build now, marked "PREVIEW — not released" on every page: the
    same checks and the same pages as :func:`release`, but nothing kept, logged or changed (the
    caller audits the look). Refused as a release would be."""
    req = roi.get(conn, request_id)
    _releasable(conn, settings, req, now.date())
    packet, _fee, _chosen = build(
        conn,
        settings,
        req,
        store_=store_,
        released_on=now.date(),
        released_by=user,
        selected=selected,
        page_exclusions=page_exclusions,
        sensitivity_rules=sensitivity_rules,
        preview=True,
    )
    return packet


def preview_filename(request_id: int) -> str:
    return f"roi-preview-{request_id}.pdf"


def release(
    conn,
    settings: RoiSettings,
    request_id: int,
    *,
    user: str,
    now: datetime,
    store_: content.ContentStore,
    selected: Iterable[str] | None = None,
    page_exclusions: dict | None = None,
    sensitivity_rules: Any = None,
) -> dict:
    """Release a ready request: the packet stored, the disclosure logged, the request released.
    Returns ``{packet_id, disclosure_id, sha256, page_count, fee}``."""
    req = roi.get(conn, request_id, for_update=True)
    _releasable(conn, settings, req, now.date())
    packet, fee, chosen = build(
        conn,
        settings,
        req,
        store_=store_,
        released_on=now.date(),
        released_by=user,
        selected=selected,
        page_exclusions=page_exclusions,
        sensitivity_rules=sensitivity_rules,
    )
    sha = store_.put(conn, packet.pdf, now)
    manifest = manifest_json(packet, chosen)
    packet_id = store.insert_packet(
        conn,
        {
            "request_id": request_id,
            "sha256": sha,
            "size": len(packet.pdf),
            "page_count": packet.page_count,
            "manifest": manifest,
            "fee_cents": fee["cents"],
            "built_by": user,
            "built_at": now,
        },
    )
    what = ", ".join(f"{m.title} {m.document_number} v{m.version}" for m in packet.manifest)
    disclosure_id = store.insert_disclosure(
        conn,
        {
            "mrn": req["mrn"],
            "request_id": request_id,
            "packet_id": packet_id,
            "disclosed_on": now.date(),
            "recipient_name": req["requester_name"]
            + (f", {req['requester_organization']}" if req["requester_organization"] else ""),
            "recipient_address": req["requester_address"] or req["requester_email"],
            "recipient_type": req["requester_type"],
            "purpose": rules.PURPOSES.get(req["purpose"], req["purpose"])
            + (f": {req['purpose_text']}" if req["purpose_text"] else ""),
            "basis": req["basis"],
            "authorization_id": req["authorization_id"] if req["basis"] == "authorization" else None,
            "description": f"{len(packet.manifest)} document(s), {packet.page_count} page(s): {what}"[:4000],
            "manifest": manifest,
            "packet_sha256": sha,
            "source": "release",
            "recorded_by": user,
            "recorded_at": now,
        },
    )
    store.update_request(conn, request_id, {"status": "released", "updated_at": now})
    store.add_event(
        conn,
        request_id,
        at=now,
        user=user,
        action="release",
        from_status=req["status"],
        to_status="released",
        note=f"packet {packet_id}: {packet.page_count} page(s), sha256 {sha}",
    )
    return {
        "packet_id": packet_id,
        "disclosure_id": disclosure_id,
        "sha256": sha,
        "page_count": packet.page_count,
        "fee": fee,
    }


def packet_pdf(conn, packet_id: int, store_: content.ContentStore) -> tuple[dict, bytes]:
    """A stored packet and its bytes, exactly as released."""
    packet = store.get_packet(conn, packet_id)
    if packet is None:
        raise RoiError(f"no packet {packet_id}", "not_found")
    data = store_.get(conn, packet["sha256"])
    if data is None or content.sha256_hex(data) != packet["sha256"]:
        raise RoiError(f"packet {packet_id} is missing from the content store", "conflict")
    return packet, data


def download_packet(
    conn,
    packet_id: int,
    store_: content.ContentStore,
    *,
    user: str,
    now: datetime,
    via: str | None = None,
    action: str = "roi_packet_download",
    detail: dict | None = None,
) -> tuple[dict, bytes]:
    """A stored packet and its bytes (:func:`packet_pdf`), with the audit entry of the download
    against the request's patient: the one way the console, the API, the command line and a
    recipient's download link hand out a packet."""
    packet, data = packet_pdf(conn, packet_id, store_)
    mrn = roi.get(conn, packet["request_id"])["mrn"]
    store_audit.record(
        conn,
        user=user,
        action=action,
        target_type="roi_request",
        target_id=packet["request_id"],
        detail={"packet": packet_id, **(detail or {})},
        now=now,
        patient=mrn,
        via=via,
    )
    return packet, data


def packet_filename(packet_id: int) -> str:
    return f"roi-packet-{packet_id}.pdf"


def accounting_pdf(result: dict) -> bytes:
    """The accounting of disclosures (``desk.roi.accounting``) as a PDF letter."""
    p = result["patient"]
    rows = [
        roi_packet.Disclosure(
            disclosed_on=date.fromisoformat(d["disclosed_on"]),
            recipient_name=d["recipient_name"],
            recipient_address=_address_lines(d["recipient_address"]),
            description=d["description"],
            purpose=d["purpose"],
            authorization_or_legal_basis=d["basis_label"],
        )
        for d in result["disclosures"]
    ]
    return roi_packet.accounting_letter(
        f"{p.get('family') or ''}, {p.get('given') or ''}".strip(", "),
        result["mrn"],
        date.fromisoformat(result["from"]),
        date.fromisoformat(result["to"]),
        rows,
        date.fromisoformat(result["generated_at"][:10]),
    )


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True)
