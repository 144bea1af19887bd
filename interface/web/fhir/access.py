"""Who may read what through ``/fhir``: the token's SMART-style scopes within the user's role
(:mod:`interface.desk.scopes`), the patient a ``patient/`` token is bound to, and the audit of
every read (one row per patient the answer is about, ``patient=<MRN>``)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from interface.desk import scopes
from interface.desk.users import User
from interface.store import audit as store_audit
from interface.store.chart import resolve_mrn
from interface.web import auth
from interface.web.fhir.common import FhirError


def scope(type_name: str):
    """A dependency (after ``auth.require``): 403 OperationOutcome unless the token's scopes (a
    console session: ``user/*.read``) and the user's role both read the type the path names
    (``/fhir/<type>/...``; ``type_name`` when the path names none)."""

    def dependency(request: Request) -> None:
        parts = request.url.path.split("/")
        type_name_here = parts[2] if len(parts) > 2 and parts[2] in scopes.TYPES else type_name
        user = request.state.user
        how = (getattr(request.state, "auth", None) or (None, None, None))[2]
        granted = scopes.grant(user.role, None if how == "session" else list(user.scopes or ()), user.patient)
        if not granted.reads(type_name_here):
            if how != "session" and not user.scopes:
                raise FhirError(403, "this API token has no FHIR scope (make one with --scope user/*.read)")
            raise FhirError(403, f"this token's scopes and role do not read {type_name_here}")
        request.state.fhir_grant = granted

    return dependency


def bound_patient(request: Request, conn) -> str | None:
    """The MRN (as it is now, after merges) a ``patient/`` token is bound to; None: any patient.
    A bound MRN that is unknown binds to nothing readable (``""``)."""
    granted = getattr(request.state, "fhir_grant", None)
    if granted is None or granted.patient is None:
        return None
    return resolve_mrn(conn, granted.patient) or ""


def check_patient(request: Request, conn, mrn: str | None, what: str) -> None:
    """403 when a patient-bound token reads a resource of another patient."""
    bound = bound_patient(request, conn)
    if bound is not None and mrn != bound:
        raise FhirError(403, f"{what} is not about this token's patient")


def narrow(request: Request, conn, asked: str | None) -> str | None:
    """The patient a search is about: what was asked, limited to the token's patient (asking for
    another one finds nothing: ``""``)."""
    bound = bound_patient(request, conn)
    if bound is None:
        return asked
    if asked is None:
        return bound
    return asked if (resolve_mrn(conn, asked) or asked) == bound else ""


def audit(
    request: Request,
    action: str,
    target_type: str,
    target_id: str | None,
    patients: Iterable[str | None],
    detail: str | dict | None = None,
) -> None:
    """One audit row per patient (MRN) the answer showed, in one transaction; one row without a
    patient when it showed none. A search is one ``search`` row with the query, then one
    ``listed`` row per patient in the Bundle (the convention of every search: docs/audit.md)."""
    mrns = list(dict.fromkeys(m for m in patients if m)) or [None]
    if detail is None:
        detail = request.url.path if action == "view" else dict(request.query_params.multi_items())
    user = request.state.user
    name = user.name if isinstance(user, User) else user
    base = {"user": name, "target_type": target_type, "target_id": target_id, "via": "fhir"}
    if action == "search":  # the query once, then each patient the Bundle listed (docs/audit.md)
        entries = [base | {"action": "search", "detail": detail}]
        entries += [base | {"action": "listed", "patient": mrn} for mrn in mrns if mrn]
    else:
        entries = [base | {"action": action, "detail": detail, "patient": mrn} for mrn in mrns]
    with request.app.state.engine.begin() as conn:  # one lock of the chain's head for them all
        store_audit.record_many(conn, entries, now=auth.clock(request))
