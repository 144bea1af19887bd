"""The FHIR routes under ``/fhir``, with their roles and their audit, and the OperationOutcome
answers for errors (used by ``interface.web.app``'s exception handlers for ``/fhir`` paths)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from interface.web import auth
from interface.web.fhir import common, document, metadata, patient

router = APIRouter(include_in_schema=False)
router.include_router(metadata.router)
router.include_router(
    patient.router,
    dependencies=[Depends(auth.require(*auth.CHARTS)), Depends(auth.audit_access("patient", "id"))],
)
router.include_router(
    document.router,
    dependencies=[Depends(auth.require(*auth.DOCUMENTS)), Depends(auth.audit_access("document", "id"))],
)


def error_response(request: Request, status: int, text: str, headers: dict | None = None):
    """An HTTP error on a FHIR path as an OperationOutcome."""
    return common.outcome(status, str(text), headers=headers)


is_fhir = common.is_fhir
FhirError = common.FhirError


def outcome_of(exc: common.FhirError):
    return common.outcome(exc.status, str(exc), exc.code)
