"""Identifier systems: which URI names each assigning authority (CX-4).

A configurable mapping, ``INTERFACE_FHIR_IDENTIFIER_SYSTEMS`` (``AUTH=URI,AUTH2=URI``) or
``app.state.fhir_identifier_systems`` (a dict); an authority not in it is ``urn:oid:<oid>`` when
it is an OID, else ``http://hospital.example/id/<authority>`` (``DEFAULT_BASE``, or
``INTERFACE_FHIR_IDENTIFIER_BASE``). No authority: no system.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from fastapi import Request

DEFAULT_BASE = "http://hospital.example/id/"
_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+\Z")


def _configured(request: Request | None) -> dict[str, str]:
    state = getattr(getattr(request, "app", None), "state", None)
    mapping = getattr(state, "fhir_identifier_systems", None)
    if isinstance(mapping, dict):
        return mapping
    out: dict[str, str] = {}
    for pair in os.environ.get("INTERFACE_FHIR_IDENTIFIER_SYSTEMS", "").split(","):
        auth, sep, uri = pair.partition("=")
        if sep and auth.strip() and uri.strip():
            out[auth.strip()] = uri.strip()
    return out


def system_for(request: Request | None, authority: str | None) -> str | None:
    if not authority:
        return None
    mapped = _configured(request).get(authority)
    if mapped:
        return mapped
    if _OID.match(authority):
        return "urn:oid:" + authority
    base = os.environ.get("INTERFACE_FHIR_IDENTIFIER_BASE") or DEFAULT_BASE
    return base + quote(authority, safe="")
