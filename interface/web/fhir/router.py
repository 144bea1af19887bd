"""The FHIR routes under ``/fhir``, with their roles, their scopes and their audit, and the
OperationOutcome answers for errors (used by ``interface.web.app``'s exception handlers for
``/fhir`` paths). Each resource's router needs its role group (``auth.CHARTS`` for the chart's
resources, ``auth.DOCUMENTS`` for documents, ``auth.AUDIT`` for the audit trail) and a token scope that reads its type
(:func:`interface.web.fhir.access.scope`); each route audits what it showed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from interface.web import auth
from interface.web.fhir import (
    access,
    auditevent,
    clinical,
    common,
    document,
    encounter,
    metadata,
    patient,
    patient_history,
    smart,
)

router = APIRouter(include_in_schema=False)
router.include_router(metadata.router)
router.include_router(smart.router)


def _guarded(sub: APIRouter, roles: tuple[str, ...], type_name: str) -> None:
    router.include_router(sub, dependencies=[Depends(auth.require(*roles)), Depends(access.scope(type_name))])


_guarded(patient.router, auth.CHARTS, "Patient")
_guarded(patient_history.router, auth.CHARTS, "Patient")
_guarded(encounter.router, auth.CHARTS, "Encounter")
for _type in clinical.KINDS:
    _guarded(clinical.router_for(_type), auth.CHARTS, _type)
_guarded(document.router, auth.DOCUMENTS, "DocumentReference")
_guarded(auditevent.router, auth.AUDIT, "AuditEvent")


def error_response(request: Request, status: int, text: str, headers: dict | None = None):
    """An HTTP error on a FHIR path as an OperationOutcome."""
    return common.outcome(status, str(text), headers=headers)


is_fhir = common.is_fhir
FhirError = common.FhirError


def outcome_of(exc: common.FhirError):
    return common.outcome(exc.status, str(exc), exc.code)
