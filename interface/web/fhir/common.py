"""What every FHIR route shares: the media type, OperationOutcome errors, instants, paging."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

from interface.web.fhir import model, serial

MEDIA_TYPE = "application/fhir+json"
FHIR_VERSION = "4.0.1"
PREFIX = "/fhir"
DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_MATCHES = 1000  # a search the server filters in Python refuses more matches (too-costly)
MAX_OFFSET = 10000  # paging deeper than this: narrow the search
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?\Z")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?\Z")
_PREFIXES = ("eq", "ne", "ge", "le", "gt", "lt", "sa", "eb")
# _total: none, estimate, accurate (see total_mode); _totalMethod (which fhirpy and HAPI send) is
# accepted and ignored
_GENERAL = frozenset({"_count", "_offset", "_format", "_lastUpdated", "_include", "_total", "_totalMethod"})
REPEATABLE = frozenset({"_lastUpdated", "date", "birthdate", "_include"})
_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 410: "deleted", 422: "invalid"}


class FhirError(Exception):
    """An error answered as an OperationOutcome with ``status``."""

    def __init__(self, status: int, text: str, code: str | None = None):
        super().__init__(text)
        self.status = status
        self.code = code or _CODES.get(status, "exception")


class FhirResponse(Response):
    media_type = MEDIA_TYPE


def respond(resource: Resource, status: int = 200, headers: dict | None = None) -> FhirResponse:
    """The resource as ``application/fhir+json``, serialised once (:mod:`.serial`).

    The model was constructed by :func:`interface.web.fhir.model.make` (not validated at run
    time); the tests parse every answer back through the R4 models."""
    body = serial.dumps(resource)
    return FhirResponse(body, status_code=status, headers=headers)


def outcome(status: int, text: str, code: str | None = None, headers: dict | None = None) -> FhirResponse:
    """An OperationOutcome with one issue (severity error) as the answer with ``status``."""
    code = code or _CODES.get(status, "exception")
    oo = model.make(OperationOutcome, issue=[{"severity": "error", "code": code, "diagnostics": text}])
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


def utc(value: Any) -> datetime | None:
    """A stored timestamp (datetime or ISO text; naive = UTC) as an aware UTC datetime."""
    text = instant(value)
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


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
        if key in out and key not in REPEATABLE:
            raise FhirError(400, f"parameter {key} given twice", "not-supported")
        out[key] = value.strip()
    return out


def values(request: Request, key: str) -> list[str]:
    """Every value of a repeatable parameter (``_lastUpdated=ge2026&_lastUpdated=lt2027``)."""
    return [v.strip() for v in request.query_params.getlist(key) if v.strip()]


def _prefixed(name: str, value: str) -> tuple[str, str]:
    op = value[:2] if value[:2] in _PREFIXES else "eq"
    return op, value[2:] if value[:2] in _PREFIXES else value


def date_compares(name: str, given: list[str], allowed: tuple[str, ...] = _PREFIXES) -> list[tuple[str, str]]:
    """(prefix, YYYY[-MM[-DD]] or an instant) for each value of a date parameter on stored ISO
    text: eq (the default), ne, ge, le, gt, lt, sa, eb; 400 otherwise."""
    out = []
    for value in given:
        op, v = _prefixed(name, value)
        if op not in allowed or not (_DATE.match(v) or _INSTANT.match(v)):
            raise FhirError(
                400,
                f"{name} must be [{'|'.join(allowed)}]YYYY[-MM[-DD]] or [prefix]YYYY-MM-DDThh:mm[:ss][zone]",
            )
        out.append((op, v))
    return out


def _span(v: str) -> tuple[datetime, datetime]:
    """The start and the end (exclusive) of a date or instant, in UTC."""
    if _INSTANT.match(v):
        at = datetime.fromisoformat(v.replace("Z", "+00:00"))
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
        return at, at + timedelta(microseconds=1)
    parts = [int(x) for x in v.split("-")]
    start = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    if len(parts) == 3:
        end = start + timedelta(days=1)
    elif len(parts) == 2:
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    else:
        end = date(start.year + 1, 1, 1)

    def utc(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)

    return utc(start), utc(end)


def last_updated(request: Request) -> list[tuple[str, datetime]]:
    """``_lastUpdated`` (repeatable) as comparisons on an UTC timestamp column: eq (the default:
    within the day, month, year or instant), ge, gt, le, lt (sa = gt, eb = lt); 400 otherwise."""
    return instant_compares("_lastUpdated", values(request, "_lastUpdated"))


def instant_compares(name: str, given: list[str]) -> list[tuple[str, datetime]]:
    """A date parameter's values (prefixes eq ge le gt lt sa eb) as comparisons ``(ge|lt, UTC
    datetime)`` on a timestamp column; 400 otherwise."""
    out: list[tuple[str, datetime]] = []
    for op, v in date_compares(name, given, ("eq", "ge", "le", "gt", "lt", "sa", "eb")):
        try:
            start, end = _span(v)
        except ValueError:
            raise FhirError(400, f"{name}: {v} is not a date") from None
        if op == "eq":
            out += [("ge", start), ("lt", end)]
        elif op == "ge":
            out.append(("ge", start))
        elif op in ("gt", "sa"):
            out.append(("ge", end))
        elif op == "le":
            out.append(("lt", end))
        else:
            out.append(("lt", start))
    return out


def includes(request: Request, type_name: str) -> bool:
    """Whether ``_include=<type_name>:patient`` (or ``:subject``) was asked; 400 for any other
    include (only the patient is included)."""
    wanted = False
    for value in values(request, "_include"):
        if value in (f"{type_name}:patient", f"{type_name}:subject"):
            wanted = True
        else:
            raise FhirError(400, f"_include supports {type_name}:patient only", "not-supported")
    return wanted


def meta(row: dict) -> dict | None:
    """``meta.versionId`` (the journal id of the message that last changed the row) and
    ``meta.lastUpdated`` (the row's ``updated_at``)."""
    out = {}
    if row.get("message_id") is not None:
        out["versionId"] = str(row["message_id"])
    if row.get("updated_at"):
        out["lastUpdated"] = instant(row["updated_at"])
    return out or None


def read(request: Request, resource: Resource) -> Response:
    """A read's answer: the resource with ``ETag: W/"<versionId>"`` (and ``Last-Modified``), or
    ``304 Not Modified`` when ``If-None-Match`` names that version."""
    headers: dict[str, str] = {}
    version = resource.meta.versionId if resource.meta is not None else None
    if version:
        headers["ETag"] = f'W/"{version}"'
        sent = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
        if headers["ETag"] in sent or f'"{version}"' in sent or "*" in sent:
            return Response(status_code=304, headers=headers)
    return respond(resource, headers=headers)


def total_mode(p: dict[str, str]) -> str:
    """``_total``: ``accurate`` (count every match), ``none`` (no total) or, absent or
    ``estimate``, ``bounded``: counted up to a cap (the total is left out past it); 400 otherwise."""
    given = p.get("_total") or "estimate"
    if given not in ("none", "estimate", "accurate"):
        raise FhirError(400, "_total must be none, estimate or accurate")
    return "bounded" if given == "estimate" else given


def paging(p: dict[str, str]) -> tuple[int, int]:
    """``_count`` (1..MAX_COUNT, default DEFAULT_COUNT) and ``_offset``; 400 when not numbers."""
    try:
        count = int(p.get("_count") or DEFAULT_COUNT)
        offset = int(p.get("_offset") or 0)
    except ValueError:
        raise FhirError(400, "_count and _offset must be whole numbers") from None
    if count < 0 or offset < 0 or offset > MAX_OFFSET:
        raise FhirError(400, f"_count must be 0..{MAX_COUNT} (0: the total only), _offset 0..{MAX_OFFSET}")
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
    request: Request,
    type_name: str,
    resources: list[Resource],
    total: int | None,
    count: int,
    offset: int,
    p: dict | None = None,
    included: list[Resource] = (),  # type: ignore[assignment]
    more: bool | None = None,
) -> FhirResponse:
    """A searchset Bundle: one page of ``resources`` (matches ``offset``..), ``total`` matches
    (None: not counted, then ``more`` says whether a next page exists), links ``self`` and
    ``next`` / ``previous``; ``included``: resources ``_include`` brought (mode include)."""
    base = base_url(request)
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_count", "_offset")]

    def link(relation: str, at: int) -> dict:
        q = urlencode([*query, ("_count", count), ("_offset", at)])
        return {"relation": relation, "url": f"{base}/{type_name}?{q}"}

    links = [link("self", offset)]
    if more if total is None else offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    bundle = model.make(
        Bundle,
        type="searchset",
        total=total,
        link=links,
        entry=[
            {"fullUrl": f"{base}/{type_name}/{r.id}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ]
        + [
            {
                "fullUrl": f"{base}/{r.__resource_type__}/{r.id}",
                "resource": r,
                "search": {"mode": "include"},
            }
            for r in included
        ],
    )
    return respond(bundle)
