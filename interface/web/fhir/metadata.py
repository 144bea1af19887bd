"""``GET /fhir/metadata``: the CapabilityStatement, saying only what is implemented."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from interface.web.fhir import common, model

router = APIRouter()

RELEASED = datetime(2026, 12, 5, tzinfo=timezone.utc)  # when this statement last changed

_LAST_UPDATED = ("_lastUpdated", "date", "when the row was last changed: prefixes eq ge le gt lt sa eb")
_PATIENT = ("patient", "reference", "Patient/MRN or the MRN (a merged-away MRN: the survivor's)")
_DATE = "prefixes eq ne ge le gt lt sa eb; YYYY, YYYY-MM, YYYY-MM-DD or an instant"

# resource type -> interactions, versioning, search parameters (name, type, documentation),
# _include values. Only what is built: tests/test_fhir*.py hold every line to account.
RESOURCES: dict[str, dict] = {
    "Patient": {
        "interactions": ["read", "vread", "history-instance", "search-type"],
        "versioning": "versioned",
        "readHistory": True,
        "search": [
            ("_id", "token", "the MRN"),
            ("identifier", "token", "the MRN, [system|]value"),
            ("family", "string", "starts with, case-insensitive"),
            ("given", "string", "starts with, case-insensitive"),
            ("name", "string", "family or given name starts with"),
            ("birthdate", "date", _DATE),
            ("gender", "token", "administrative-gender"),
            _LAST_UPDATED,
        ],
        "include": [],
    },
    "Encounter": {
        "interactions": ["read", "search-type"],
        "versioning": "versioned",
        "search": [
            ("_id", "token", "the visit's id"),
            _PATIENT,
            ("subject", "reference", "as patient"),
            ("identifier", "token", "the visit number (PV1-19)"),
            ("status", "token", "planned, in-progress, finished, cancelled"),
            ("date", "date", "the period overlaps: " + _DATE),
            _LAST_UPDATED,
        ],
        "include": ["Encounter:patient"],
    },
    "Coverage": {
        "interactions": ["read", "search-type"],
        "versioning": "versioned",
        "search": [
            ("_id", "token", "the row id"),
            _PATIENT,
            ("beneficiary", "reference", "as patient"),
            _LAST_UPDATED,
        ],
        "include": ["Coverage:patient"],
    },
    "AllergyIntolerance": {
        "interactions": ["read", "search-type"],
        "versioning": "versioned",
        "search": [("_id", "token", "the row id"), _PATIENT, _LAST_UPDATED],
        "include": ["AllergyIntolerance:patient"],
    },
    "Condition": {
        "interactions": ["read", "search-type"],
        "versioning": "versioned",
        "search": [
            ("_id", "token", "the row id"),
            _PATIENT,
            ("subject", "reference", "as patient"),
            _LAST_UPDATED,
        ],
        "include": ["Condition:patient"],
    },
    "DocumentReference": {
        "interactions": ["read", "vread", "history-instance", "search-type"],
        "versioning": "versioned",
        "readHistory": True,
        "search": [
            ("_id", "token", "the document number"),
            _PATIENT,
            ("subject", "reference", "as patient"),
            ("type", "token", "table 0270 code"),
            ("status", "token", "current, superseded or entered-in-error"),
            ("date", "date", "origination date: " + _DATE),
            _LAST_UPDATED,
        ],
        "include": ["DocumentReference:patient"],
    },
    "AuditEvent": {
        "interactions": ["read", "search-type"],
        "versioning": "no-version",
        "search": [
            ("_id", "token", "the entry's id"),
            (
                "patient",
                "reference",
                "Patient/MRN or the MRN: merges resolved (the chart and every MRN merged into it)",
            ),
            ("agent", "reference", "the user name (console/API user; the OS user for the command line)"),
            ("date", "date", "when recorded: prefixes eq ge le gt lt sa eb; YYYY[-MM[-DD]] or an instant"),
            ("_lastUpdated", "date", "as date"),
        ],
        "include": [],
    },
    "Binary": {
        "interactions": ["read", "vread"],
        "versioning": "versioned",
        "readHistory": True,
        "search": [],
        "include": [],
    },
}

SECURITY = (
    "Authorization: Bearer <API token> (interface users token NAME --scope user/*.read). Tokens carry "
    "SMART-style scopes (patient/*.read, user/*.read, patient/Patient.read, ...; patient/ scopes bound to "
    "one patient with --patient MRN) within the user's role (clerk, admin; AuditEvent: auditor, admin, "
    "user/ scopes only). There is no OAuth "
    "authorization server, no launch and no token endpoint: see .well-known/smart-configuration."
)


def statement(request: Request, resources: dict | None = None) -> CapabilityStatement:
    resources = RESOURCES if resources is None else resources
    rest_resources = []
    for name, spec in resources.items():
        entry = {
            "type": name,
            "interaction": [{"code": c} for c in spec["interactions"]],
            "versioning": spec.get("versioning", "no-version"),
            "readHistory": spec.get("readHistory", False),
            "updateCreate": False,
            "conditionalRead": "not-match" if "read" in spec["interactions"] else None,
        }
        if spec["search"]:
            entry["searchParam"] = [{"name": n, "type": t, "documentation": d} for n, t, d in spec["search"]]
        if spec["include"]:
            entry["searchInclude"] = spec["include"]
        rest_resources.append({k: v for k, v in entry.items() if v is not None})
    return model.make(
        CapabilityStatement,
        status="active",
        date=common.instant(RELEASED),
        kind="instance",
        software={"name": "interface-engine FHIR face"},
        implementation={
            "description": "read-only FHIR R4 view of the chart and document index",
            "url": common.base_url(request),
        },
        fhirVersion=common.FHIR_VERSION,
        format=["json"],
        rest=[
            {
                "mode": "server",
                "documentation": "Read-only. searchset Bundles with total and self/next/previous links; "
                "_count (1..100, default 20); ETag and If-None-Match (304) on reads.",
                "security": {"description": SECURITY},
                "resource": rest_resources,
            }
        ],
    )


@router.get("/fhir/metadata")
def metadata(request: Request):
    """The CapabilityStatement (public, as FHIR clients read it before they authenticate)."""
    return common.respond(statement(request, getattr(request.app.state, "fhir_resources", None)))
