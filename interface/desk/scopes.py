"""SMART-style scopes on API tokens, and what each role may read through FHIR.

A token carries zero or more scopes (SMART App Launch v1 syntax, read only)::

    patient/*.read  user/*.read  patient/Patient.read  user/Encounter.read  ...

* ``user/<type>.read``: every patient the token's user may see, for that resource type
  (``*``: every type the server serves).
* ``patient/<type>.read``: one patient only. There is no OAuth server and so no launch context:
  the patient is bound to the token when it is made (``interface users token NAME --scope
  patient/*.read --patient MRN``); a patient scope without a bound patient is refused.

A scope never widens a role: the token's user must also hold a role that reads the type
(:data:`ROLE_READS`). A token with no FHIR scope is refused on ``/fhir`` (403); console
sessions (the browser) read as ``user/*.read`` within their role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The chart's resource types (Binary follows DocumentReference: a scope for one covers the
# other, as its content), and the audit trail's (AuditEvent).
CHART_TYPES = (
    "Patient",
    "Encounter",
    "Coverage",
    "AllergyIntolerance",
    "Condition",
    "DocumentReference",
    "Binary",
)
TYPES = (*CHART_TYPES, "AuditEvent")
# Which roles read which types (admin: everything). Analysts read no patient data; auditors read
# the audit trail only (as the access report), clerks never read it.
ROLE_READS: dict[str, frozenset[str]] = {
    "clerk": frozenset(CHART_TYPES),
    "admin": frozenset(TYPES),
    "analyst": frozenset(),
    "auditor": frozenset({"AuditEvent"}),
}
_SCOPE = re.compile(r"(patient|user)/(\*|[A-Z][A-Za-z]+)\.(read|\*)\Z")
SUPPORTED = ("patient/*.read", "user/*.read", *(f"{c}/{t}.read" for c in ("patient", "user") for t in TYPES))


class ScopeError(ValueError):
    """A scope this server does not grant (syntax, an unknown type, a write scope)."""


@dataclass(frozen=True)
class Grant:
    """What a request may read: resource types, and the one patient (MRN) when bound."""

    types: frozenset[str]
    patient: str | None = None

    def reads(self, type_name: str) -> bool:
        return type_name in self.types


def parse(text: str | None) -> list[str]:
    """The scopes of a space- or comma-separated text, checked and de-duplicated in order."""
    out: list[str] = []
    for scope in (text or "").replace(",", " ").split():
        m = _SCOPE.match(scope)
        if not m:
            raise ScopeError(
                f"unsupported scope {scope!r} (read scopes such as user/*.read, patient/Patient.read)"
            )
        if m.group(3) == "*":
            raise ScopeError(f"{scope!r}: this server is read-only; use {m.group(1)}/{m.group(2)}.read")
        if m.group(2) != "*" and m.group(2) not in TYPES:
            raise ScopeError(f"{scope!r}: unknown resource type (served: {', '.join(TYPES)})")
        if scope not in out:
            out.append(scope)
    return out


def needs_patient(scopes: list[str]) -> bool:
    return any(s.startswith("patient/") for s in scopes)


def grant(role: str, scopes: list[str] | None, patient: str | None) -> Grant:
    """The types a user of ``role`` holding ``scopes`` may read (``scopes`` None: a console
    session, ``user/*.read``). Patient and user scopes on one token: the patient binding limits
    them all (the token was made for that patient)."""
    role_types = ROLE_READS.get(role, frozenset())
    if scopes is None:
        return Grant(role_types)
    types: set[str] = set()
    for scope in scopes:
        m = _SCOPE.match(scope)
        if m is None:
            continue
        kind = m.group(2)
        types |= set(TYPES) if kind == "*" else {kind}
    if "DocumentReference" in types:
        types.add("Binary")
    bound = patient if needs_patient(scopes) else None
    if needs_patient(scopes) and not bound:
        types = set()
    if bound:  # a token made for one patient reads that patient's data, never the audit trail
        types.discard("AuditEvent")
    return Grant(frozenset(types) & role_types, bound)
