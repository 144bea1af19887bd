"""What every FHIR route shares: the media type, OperationOutcome errors, instants, paging."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

MEDIA_TYPE = "application/fhir+json"
FHIR_VERSION = "4.0.1"
PREFIX = "/fhir"
DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_MATCHES = 1000  # a search matching more is refused (too-costly): narrow it
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?\Z")
_GENERAL = frozenset({"_count", "_offset", "_format"})
_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 410: "deleted", 422: "invalid"}


class FhirError(Exception):
    """An error answered as an OperationOutcome with ``status``."""

    def __init__(self, status: int, text: str, code: str | None = None):
        super().__init__(text)
        self.status = status
        self.code = code or _CODES.get(status, "exception")


class FhirResponse(JSONResponse):
    media_type = MEDIA_TYPE


def respond(resource: Resource, status: int = 200, headers: dict | None = None) -> FhirResponse:
    """The resource, validated again by its model on the way out, as ``application/fhir+json``."""
    checked = type(resource).model_validate(resource.model_dump(mode="json", exclude_none=True))
    return FhirResponse(
        checked.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
    )


def outcome(status: int, text: str, code: str | None = None, headers: dict | None = None) -> FhirResponse:
    """An OperationOutcome with one issue (severity error) as the answer with ``status``."""
    code = code or _CODES.get(status, "exception")
    oo = OperationOutcome(issue=[{"severity": "error", "code": code, "diagnostics": text}])
    return respond(oo, status, headers)


def is_fhir(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def instant(value: Any) -> str | None:
    """A FHIR instant (with a zone) from a datetime or an ISO text; naive times are UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def date_of(value: Any) -> str | None:
    """A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) from a stored date (ISO or HL7 YYYYMMDD)."""
    if not value or not isinstance(value, str):
        return None
    v = value.strip()
    if re.fullmatch(r"\d{8}.*", v):
        v = f"{v[:4]}-{v[4:6]}-{v[6:8]}"
    v = v[:10]
    return v if _DATE.match(v) else None


def params(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, one value each; 400 for an unknown or repeated parameter or a
    modifier (``family:exact``), none of which are implemented."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed and key not in _GENERAL:
            raise FhirError(400, f"unknown or unsupported search parameter: {key}", "not-supported")
        if key in out:
            raise FhirError(400, f"parameter {key} given twice", "not-supported")
        out[key] = value.strip()
    return out


def paging(p: dict[str, str]) -> tuple[int, int]:
    """``_count`` (1..MAX_COUNT, default DEFAULT_COUNT) and ``_offset``; 400 when not numbers."""
    try:
        count = int(p.get("_count") or DEFAULT_COUNT)
        offset = int(p.get("_offset") or 0)
    except ValueError:
        raise FhirError(400, "_count and _offset must be whole numbers") from None
    if count < 1 or offset < 0 or offset > MAX_MATCHES:
        raise FhirError(400, f"_count must be 1..{MAX_COUNT}, _offset 0..{MAX_MATCHES}")
    return min(count, MAX_COUNT), offset


def date_param(name: str, value: str) -> str:
    """A date search value: YYYY, YYYY-MM or YYYY-MM-DD (an optional ``eq`` prefix); 400 otherwise."""
    if value.startswith("eq"):
        value = value[2:]
    if not _DATE.match(value):
        raise FhirError(400, f"{name} must be YYYY, YYYY-MM or YYYY-MM-DD (prefix eq only)")
    return value


def token_param(value: str) -> tuple[str | None, str]:
    """``system|code`` or ``code`` (``|code``: no system)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def searchset(
    request: Request, type_name: str, resources: list[Resource], total: int, count: int, offset: int, p: dict
) -> FhirResponse:
    """A searchset Bundle: one page of ``resources`` (matches ``offset``..), ``total`` matches,
    links ``self`` and (when there are more) ``next`` / ``previous``."""
    base = base_url(request)
    query = {k: v for k, v in p.items() if k not in ("_count", "_offset")}

    def link(relation: str, at: int) -> dict:
        q = urlencode({**query, "_count": count, "_offset": at})
        return {"relation": relation, "url": f"{base}/{type_name}?{q}"}

    links = [link("self", offset)]
    if offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    bundle = Bundle(
        type="searchset",
        total=total,
        link=links,
        entry=[
            {"fullUrl": f"{base}/{type_name}/{r.id}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    )
    return respond(bundle)
