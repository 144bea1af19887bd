"""``GET /fhir/AuditEvent/{id}`` and ``GET /fhir/AuditEvent?...``: the audit trail
(:mod:`interface.store.audit`) as FHIR R4 AuditEvents, for auditors and admins (the access
report's readers). The id is the entry's row id; entries never change, so there is no history.
The mapping, field by field, is in docs/fhir.md; reading the trail is itself audited
(``access_report``, as the REST API's report)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fhir.resources.R4B.auditevent import AuditEvent

from interface.store import audit as store_audit
from interface.web import auth
from interface.web.fhir import common, lists, model
from interface.web.fhir.common import FhirError
from interface.web.reading import reading

router = APIRouter()

DICOM = "http://dicom.nema.org/resources/ontology/DCM"
REST = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
LOCAL = "http://hospital.example/fhir/CodeSystem/"  # this engine's own codes
ACTION_SYSTEM = LOCAL + "audit-action"
VIA_SYSTEM = LOCAL + "audit-via"
TARGET_SYSTEM = LOCAL + "audit-target"  # the entry's target_type; the value is its target_id
USER_SYSTEM = LOCAL + "user"  # console/API user names; the OS user for the command line
ENTRY_SYSTEM = LOCAL + "audit-entry"  # the entry's place in the hash chain (seq)
OBSERVER = "interface engine"

PATIENT_RECORD = (DICOM, "110110", "Patient Record")
QUERY = (DICOM, "110112", "Query")
AUDIT_LOG_USED = (DICOM, "110101", "Audit Log Used")
USER_AUTH = (DICOM, "110114", "User Authentication")
EXPORT = (DICOM, "110106", "Export")
EMERGENCY = (DICOM, "110127", "Emergency Override Started")

# The entry's action -> (event type, AuditEvent.action, DICOM subtype or None). An action not
# here: the local code system with the action code, and E.
TYPES: dict[str, tuple[tuple[str, str, str], str, tuple[str, str, str] | None]] = {
    "view": (PATIENT_RECORD, "R", None),
    "view_content": (PATIENT_RECORD, "R", None),
    "reveal": (PATIENT_RECORD, "R", None),
    "listed": (PATIENT_RECORD, "R", None),
    "candidates": (PATIENT_RECORD, "R", None),
    "search": (QUERY, "E", None),
    "access_report": (AUDIT_LOG_USED, "R", None),
    "verify": (AUDIT_LOG_USED, "E", None),
    "login": (USER_AUTH, "E", (DICOM, "110122", "Login")),
    "login_limited": (USER_AUTH, "E", (DICOM, "110122", "Login")),
    "login_failed": (USER_AUTH, "E", (DICOM, "110122", "Login")),
    "logout": (USER_AUTH, "E", (DICOM, "110123", "Logout")),
    "export": (EXPORT, "R", None),
    "release": (EXPORT, "R", None),
    "break_glass": (EMERGENCY, "E", None),
}
# Local actions: AuditEvent.action (C create, U update, D delete, E execute) and their words.
LOCAL_ACTIONS: dict[str, tuple[str, str]] = {
    "retry": ("E", "retry a destination"),
    "resubmit": ("E", "resubmit an error item"),
    "reprocess": ("E", "reprocess a message"),
    "discard": ("U", "discard an error item"),
    "file": ("U", "file a document to a patient"),
    "waive_deficiency": ("U", "waive a document deficiency"),
    "scan_upload": ("C", "upload a scanned document"),
    "authorization": ("C", "record an authorization"),
    "revoke": ("U", "revoke"),
    "extend": ("U", "extend a deadline"),
    "received": ("C", "a message received"),
    "replaced": ("U", "a record replaced by a newer version"),
    "ignored_older": ("E", "an older update ignored"),
    "pause": ("E", "pause a channel"),
    "resume": ("E", "resume a channel"),
    "reload": ("E", "reload the configuration"),
}
# target_type -> FHIR resource type, where the target is one the FHIR face serves
REFERENCES = {
    "patient": "Patient",
    "document": "DocumentReference",
    "encounter": "Encounter",
    "coverage": "Coverage",
    "allergy": "AllergyIntolerance",
    "condition": "Condition",
}
# via -> security-source-type (3 web server, 4 application server; the engine itself: 2 data
# interface)
SOURCES = {"console": "3", "api": "3", "fhir": "3", "cli": "4", None: "2"}
SOURCE_WORDS = {"2": "Data Interface", "3": "Web Server", "4": "Application Server"}
SEARCH = {"_id", "patient", "agent", "date"}


def _coding(triple: tuple[str, str, str]) -> dict:
    return {"system": triple[0], "code": triple[1], "display": triple[2]}


def _words(action: str) -> str:
    return LOCAL_ACTIONS.get(action, ("E", action.replace("_", " ")))[1]


def _subtypes(e: dict, dicom: tuple[str, str, str] | None) -> list[dict]:
    out = [_coding(dicom)] if dicom else []
    if e.get("via") == "fhir" and e["action"] in ("view", "search", "listed"):
        path = str(e.get("detail") or "")
        if e["action"] != "view":
            code = "search-type"
        elif path.endswith("/_history"):
            code = "history-instance"
        elif "/_history/" in path:
            code = "vread"
        else:
            code = "read"
        out.append({"system": REST, "code": code, "display": code})
    return out


def _entities(e: dict) -> list[dict]:
    out: list[dict] = []
    if e.get("patient"):
        out.append(
            {
                "what": {"reference": f"Patient/{e['patient']}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    kind, target = e.get("target_type"), e.get("target_id")
    if kind and target and not (kind == "patient" and target == e.get("patient")):
        if kind in REFERENCES:
            out.append(
                {
                    "what": {"reference": f"{REFERENCES[kind]}/{target}"},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
                }
            )
        else:
            out.append(
                {
                    "what": {"identifier": {"system": f"{TARGET_SYSTEM}/{kind}", "value": target}},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "name": kind,
                }
            )
    elif kind and not target:
        out.append({"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}, "name": kind})
    record: dict[str, Any] = {  # the entry itself: its place in the hash chain and its detail
        "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
        "name": "audit trail entry",
    }
    details = []
    if e.get("seq") is not None:
        record["what"] = {"identifier": {"system": ENTRY_SYSTEM, "value": str(e["seq"])}}
        details.append({"type": "entry_hash", "valueString": e["entry_hash"]})
    if e.get("detail"):
        details.append({"type": "detail", "valueString": e["detail"]})
    if details:
        record["detail"] = details
    if details or "what" in record:
        out.append(record)
    return out


def build(e: dict) -> AuditEvent:
    """The AuditEvent of an audit entry (a row of :func:`interface.store.audit.page`)."""
    action = e["action"]
    if action in TYPES:
        event_type, verb, dicom = TYPES[action]
        type_coding = _coding(event_type)
    else:
        verb = LOCAL_ACTIONS.get(action, ("E", ""))[0]
        dicom = None
        type_coding = {"system": ACTION_SYSTEM, "code": action, "display": _words(action)}
    source_type = SOURCES.get(e.get("via"), "2")
    via_code = e.get("via") or "engine"
    return model.make(
        AuditEvent,
        id=str(e["id"]),
        meta={"lastUpdated": common.instant(e["at"])},
        type=type_coding,
        subtype=_subtypes(e, dicom) or None,
        action=verb,
        recorded=common.instant(e["at"]),
        outcome="4" if action == "login_failed" else "0",
        purposeOfEvent=[{"text": e["reason"]}] if e.get("reason") else None,
        agent=[
            {
                "who": {"identifier": {"system": USER_SYSTEM, "value": e["user"]}, "display": e["user"]},
                "name": e["user"],
                "requestor": True,
            }
        ],
        source={
            "observer": {"display": OBSERVER},
            "type": [
                {"system": SOURCE_TYPE, "code": source_type, "display": SOURCE_WORDS[source_type]},
                {"system": VIA_SYSTEM, "code": via_code},
            ],
        },
        entity=_entities(e) or None,
    )


def _audit(request: Request, target_id: str | None, patient: str | None, detail: Any) -> None:
    """Reading the trail is itself recorded, as the access report is (``access_report``)."""
    auth.audit_now(
        request,
        action="access_report",
        target_type="audit",
        target_id=target_id,
        detail=detail,
        patient=patient,
    )


@router.get("/fhir/AuditEvent/{id}")
def read_audit_event(id: str, request: Request):
    with reading(request) as conn:
        rows = store_audit.page(conn, entry_id=int(id), count=1)[1] if id.isdigit() and len(id) < 19 else []
    if not rows:
        raise FhirError(404, f"AuditEvent/{id} is not known")
    _audit(request, id, rows[0]["patient"], request.url.path)
    return common.read(request, build(rows[0]))


@router.get("/fhir/AuditEvent")
def search_audit_events(request: Request):
    """AuditEvents newest first, by patient (``Patient/MRN`` or the MRN; merges resolved: the
    chart it lives under and every MRN merged into it), agent (the user name), date (when
    recorded; prefixes eq ge le gt lt sa eb, repeatable), _id, _lastUpdated (as date)."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    at = common.instant_compares("date", common.values(request, "date")) + common.last_updated(request)
    asked = lists.patient_param(p)
    entry_id = None
    if p.get("_id"):
        entry_id = int(p["_id"]) if p["_id"].isdigit() and len(p["_id"]) < 19 else -1
    with reading(request) as conn:
        mrns = store_audit.patient_mrns(conn, asked) if asked else None
        total, rows = store_audit.page(
            conn, mrns=mrns, user=p.get("agent") or None, entry_id=entry_id, at=at, count=count, offset=offset
        )
    _audit(request, None, asked, dict(request.query_params.multi_items()))
    return common.searchset(request, "AuditEvent", [build(r) for r in rows], total, count, offset)
