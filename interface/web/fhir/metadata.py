"""``GET /fhir/metadata``: the CapabilityStatement, saying only what is implemented."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from interface.web.fhir import common

router = APIRouter()

RELEASED = datetime(2026, 12, 3, tzinfo=timezone.utc)  # when this statement last changed

# resource type -> (search parameters: (name, type, documentation), interactions)
RESOURCES: dict[str, list[tuple[str, str, str]]] = {
    "Patient": [
        ("_id", "token", "the MRN"),
        ("identifier", "token", "the MRN, [system|]value"),
        ("family", "string", "starts with, case-insensitive"),
        ("given", "string", "starts with, case-insensitive"),
        ("name", "string", "family or given name starts with"),
        ("birthdate", "date", "YYYY, YYYY-MM or YYYY-MM-DD (eq only)"),
        ("gender", "token", "administrative-gender"),
    ],
    "DocumentReference": [
        ("_id", "token", "the document number"),
        ("patient", "reference", "Patient/MRN or the MRN"),
        ("subject", "reference", "as patient"),
        ("type", "token", "table 0270 code"),
        ("status", "token", "current, superseded or entered-in-error"),
        ("date", "date", "origination date: YYYY, YYYY-MM or YYYY-MM-DD"),
    ],
    "Binary": [],
}


def statement(request: Request, resources: dict | None = None) -> CapabilityStatement:
    resources = RESOURCES if resources is None else resources
    rest_resources = []
    for name, search in resources.items():
        interactions = [{"code": "read"}] + ([{"code": "search-type"}] if search else [])
        entry = {
            "type": name,
            "interaction": interactions,
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
        }
        if search:
            entry["searchParam"] = [{"name": n, "type": t, "documentation": d} for n, t, d in search]
        rest_resources.append(entry)
    return CapabilityStatement(
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
                "documentation": "Read-only. Bearer API token or console session; clerk role (or admin).",
                "security": {
                    "description": "Authorization: Bearer <API token> (interface users); no SMART on FHIR"
                },
                "resource": rest_resources,
            }
        ],
    )


@router.get("/fhir/metadata")
def metadata(request: Request):
    """The CapabilityStatement (public, as FHIR clients read it before they authenticate)."""
    return common.respond(statement(request, getattr(request.app.state, "fhir_resources", None)))
