"""The web console: server-rendered HTML pages for analysts, clerks and auditors.

Pages (each a plain GET that works without JavaScript; htmx only refreshes the dashboard):

============================  ===============================================================
``/``                         dashboard: per channel state, counters, queue depth, oldest item
``/messages``                 message browser: search by MRN, control id, type, status,
                              channel, time; keyset paging (``before``/``after`` ids)
``/messages/{id}``            one message (a permalink): tabs raw / parsed / ack / history
``/errors``                   error queue grouped by reason; bulk retry/discard of the
                              checked rows
``/errors/{item}``            one work item: failing field, last error, attempts, raw message,
                              retry / discard (reason required) / edit-and-resubmit
``/patients``, ``/patients/{mrn}``   patient search and chart
``/documents/{number}``       a document entry, its versions and a content viewer
``/documents/{number}/content``  the bytes (HTML and other active content sandboxed by CSP)
``/deficiencies``             completeness worklist
``/audit``                    the audit trail (auditor, admin)
``/users``                    user administration (admin; :mod:`interface.pages_users`)
============================  ===============================================================

Access: every route depends on :func:`interface.auth.require` with the role group of
``interface.auth`` (admin always allowed); unsafe requests carry the session's CSRF token, which
the dependency checks. Patient identifiers are masked in messages and lists until a user reveals
them with a reason; each reveal, each chart or document view and each clerk action writes an
``audit`` row. Clerk actions call the :mod:`interface.queue` functions inside one transaction
with the acting user's name.
"""
from __future__ import annotations

import functools
import re
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from . import auth, masking, queue
from .api_channels import runtime_counters
from .auth import record_audit, require
from .schema import audit, events, messages, work_attempts, work_items
from .users import User

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))

PAGE_SIZE = 50
MAX_ID = 2**63 - 1
MESSAGE_STATUSES = ("accepted", "processed", "error", "rejected", "quarantined", "discarded",
                    "resubmitted")
ITEM_STATUSES = ("error", "held", "pending", "discarded", "done")
STALE_QUEUE_SECONDS = 300  # an item waiting longer than this marks its channel unhealthy

# Role groups (admin is always allowed by require()).
ANY = require(*auth.ANY)
MESSAGES = require(*auth.MESSAGES)
ERRORS = require(*auth.ERRORS)
CHARTS = require(*auth.CHARTS)
DOCUMENTS = require(*auth.DOCUMENTS)
AUDIT = require(*auth.AUDIT)


# ---------------------------------------------------------------------------------------------
# helpers


def _engine(request: Request):
    """For writes (and the audit rows of reads)."""
    return request.app.state.engine


def _reader(request: Request):
    """For reads: on SQLite a snapshot that never takes the write lock (db.read_only_engine)."""
    return request.app.state.reader


def _now(request: Request) -> datetime:
    return auth.clock(request)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def fmt_time(dt: Any) -> str:
    """UTC date-time for display; SQLite gives naive datetimes that are UTC."""
    if dt is None or dt == "":
        return ""
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            return dt
    return _aware(dt).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _hl7_time(value: str | None) -> str:
    """``20260308221000`` -> ``2026-03-08 22:10:00`` (as sent, time zone suffix kept)."""
    if not value:
        return ""
    m = re.match(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$", value)
    if not m:
        return value
    y, mo, d, h, mi, s, _frac, tz = m.groups()
    out = y + (f"-{mo}" if mo else "") + (f"-{d}" if d else "")
    if h:
        out += f" {h}:{mi or '00'}" + (f":{s}" if s else "")
    return out + (f" {tz}" if tz else "")


def _render(request: Request, name: str, ctx: dict, status_code: int = 200) -> HTMLResponse:
    user = getattr(request.state, "user", None)
    base = {"user": user, "csrf_token": getattr(request.state, "csrf_token", None) or "",
            "nav": _nav(user), "path": request.url.path}
    base.update(ctx)
    resp = TEMPLATES.TemplateResponse(request, name, base, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"  # pages hold patient data: never cached
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"  # URLs carry MRNs
    return resp


# Only our own scripts and styles: message text shown on a page can never run as script.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
            "form-action 'self'")


def _nav(user: User | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    role = user.role
    admin = role == "admin"
    items = [("/", "Dashboard")]
    if admin or role in auth.MESSAGES:
        items.append(("/messages", "Messages"))
    if admin or role in auth.ERRORS:
        items.append(("/errors", "Error queue"))
    if admin or role in auth.CHARTS:
        items.append(("/patients", "Patients"))
    if admin or role in auth.DOCUMENTS:
        items.append(("/deficiencies", "Completeness"))
    if admin or role in auth.AUDIT:
        items.append(("/audit", "Audit log"))
    if admin:
        items.append(("/users", "Users"))
    return items


def _clean(value: str | None, limit: int = 200) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None


def _parse_dt(value: str | None, name: str) -> datetime | None:
    """A date or ``datetime-local`` form value, read as UTC; 400 when unreadable."""
    value = _clean(value, 40)
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"{name}: not a date/time (use YYYY-MM-DD HH:MM)") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _qs(params: dict, **changes) -> str:
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return urlencode(merged)


def html_errors(fn):
    """Render an HTTPException raised inside a page handler as an HTML page (the app's default
    handler answers JSON, which is right for the API but not for a person in a browser)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HTTPException as exc:
            return error_page(kwargs["request"], exc.status_code, exc.detail, exc.headers)

    return wrapper


def error_page(request: Request, status_code: int, message: Any, headers: dict | None = None) -> HTMLResponse:
    """``error.html`` in the console's layout: the status unchanged, the message escaped by the
    template, a link back to the dashboard. When :func:`~interface.auth.require` refused the
    request (role, CSRF) the user is known but not yet set on the request: the navigation then
    still shows their pages."""
    ctx: dict = {"status": status_code, "message": message if isinstance(message, str) else str(message)}
    if getattr(request.state, "user", None) is None:
        user, csrf, _how = getattr(request.state, "auth", None) or (None, None, None)
        ctx.update(user=user, nav=_nav(user), csrf_token=csrf or "")
    resp = _render(request, "error.html", ctx, status_code=status_code)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


mask = auth.mask


@router.get("/favicon.ico")
def favicon():
    """Browsers ask for it on every origin; the pages link /static/favicon.svg."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


@router.get("/static/{name}")
def static(name: str):
    """The console's CSS and vendored scripts (a fixed directory, no sub-paths)."""
    path = STATIC / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(status_code=404)
    media = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}.get(path.suffix.lstrip("."),
                                                                                "text/plain")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------------------------------
# HL7 field names (hl7apy's tables) and masking


SEGMENT_NAMES = {
    "MSH": "Message Header", "EVN": "Event Type", "PID": "Patient Identification",
    "PD1": "Patient Additional Demographic", "NK1": "Next of Kin / Associated Parties",
    "PV1": "Patient Visit", "PV2": "Patient Visit - Additional Information",
    "OBX": "Observation/Result", "OBR": "Observation Request", "ORC": "Common Order",
    "AL1": "Patient Allergy Information", "IAM": "Patient Adverse Reaction Information",
    "DG1": "Diagnosis", "DRG": "Diagnosis Related Group", "PR1": "Procedures",
    "GT1": "Guarantor", "IN1": "Insurance", "IN2": "Insurance Additional Information",
    "IN3": "Insurance Additional Information, Certification", "ROL": "Role", "MRG": "Merge Patient Information",
    "TXA": "Transcription Document Header", "NTE": "Notes and Comments", "MSA": "Message Acknowledgment",
    "ERR": "Error", "SFT": "Software", "UB1": "UB82", "UB2": "Uniform Billing Data", "ACC": "Accident",
    "DB1": "Disability", "ZPD": "Site-defined segment (Z)", "FHS": "File Header", "FTS": "File Trailer",
    "BHS": "Batch Header", "BTS": "Batch Trailer", "QRD": "Original-Style Query Definition",
    "ARV": "Access Restriction", "PRT": "Participation Information", "SPM": "Specimen",
}

# Which fields are masked, for whom, and how a reveal is audited: interface.masking (one rule
# for the console, the API and the CLI).
MASKED_FIELDS = masking.MESSAGE_FIELDS
MASK = masking.MASK


def _nice(name: str, segment: str = "") -> str:
    words = name.replace("_", " ").strip().split()
    small = {"of", "or", "and", "to", "the", "for", "in", "e", "g", "id"}
    out = []
    for w in words:
        lw = w.lower()
        if lw == "id" or (segment and w == segment):
            out.append(w.upper())
        else:
            out.append(lw if lw in small and out else lw.capitalize())
    return " ".join(out)


@lru_cache(maxsize=16)
def _library(version: str):
    from hl7apy import load_library

    for v in (version, ".".join(version.split(".")[:2]), "2.5"):
        try:
            return load_library(v)
        except Exception:  # hl7apy raises its own UnsupportedVersion
            continue
    return None  # pragma: no cover


@lru_cache(maxsize=4096)
def field_info(version: str, segment: str, number: int) -> dict:
    """Name, data type, table and component names of SEG-n from hl7apy's reference tables."""
    lib = _library(version or "2.5")
    out = {"name": "", "datatype": "", "table": "", "table_name": "", "components": []}
    if lib is None:
        return out
    seg = lib.SEGMENTS.get(segment)
    if not seg:
        return out
    children = seg[1] if isinstance(seg, tuple) and len(seg) > 1 else ()
    ref = None
    for child in children:
        if child[0] == f"{segment}_{number}":
            ref = child[1]
            break
    if ref is None:
        ref = lib.FIELDS.get(f"{segment}_{number}")
    if not ref:
        return out
    out["datatype"] = ref[2] or ""
    out["name"] = _nice(ref[3] or "", segment)
    table = ref[4]
    if table:
        out["table"] = table.replace("HL7", "")
        t = getattr(lib, "TABLES", {}).get(table)
        if t:
            out["table_name"] = t[0]
    if ref[0] == "sequence":
        for comp in ref[1]:
            cref = comp[1]
            out["components"].append(_nice(cref[3] or ""))
    return out


def field_title(version: str, segment: str, number: int) -> tuple[str, str]:
    """(short label, hover text) for a field."""
    info = field_info(version, segment, number)
    label = info["name"] or "(not in the standard)"
    hover = f"{segment}-{number} {label}"
    if info["datatype"]:
        hover += f" — data type {info['datatype']}"
    if info["table"]:
        hover += f"; HL7 table {info['table']}"
        if info["table_name"]:
            hover += f" ({info['table_name']})"
    return label, hover


_LOCATION = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?)?")


def parse_location(text: str | None) -> dict | None:
    """``PID-3[2].1`` -> {segment, sequence, field, repetition, component}; None if unreadable."""
    if not text:
        return None
    m = _LOCATION.match(text.strip())
    if not m:
        return None
    seg, seqno, fieldno, rep, comp, sub = m.groups()
    return {"segment": seg, "sequence": int(seqno or 1), "field": int(fieldno) if fieldno else None,
            "repetition": int(rep or 1), "component": int(comp) if comp else None,
            "subcomponent": int(sub) if sub else None, "text": text.strip()}


_masked = masking.masked_field


def _split_fields(seg_text: str, enc) -> tuple[str, list[str]]:
    """(segment id, fields) with fields[n] = SEG-n (MSH-1 is the field separator)."""
    if seg_text.startswith(("MSH", "FHS", "BHS")):
        parts = seg_text.split(enc.field)
        return seg_text[:3], [parts[0], enc.field] + parts[1:]
    parts = seg_text.split(enc.field)
    return parts[0].strip(), parts


def _encoding(text: str):
    from .message import Encoding, split_segments, strip_leading

    segs = split_segments(strip_leading(text))
    try:
        enc = Encoding.from_msh(segs[0]) if segs else Encoding()
    except Exception:
        enc = Encoding()
    return segs, enc


masked_text = masking.message_text


def parsed_view(text: str, version: str, reveal: bool, failing: dict | None = None) -> list[dict]:
    """Segments with named fields (non-empty ones), components named on hover."""
    segs, enc = _encoding(text)
    out = []
    counts: dict[str, int] = {}
    for line_no, s in enumerate(segs, start=1):
        name, fields = _split_fields(s, enc)
        counts[name] = counts.get(name, 0) + 1
        seq = counts[name]
        seg_fail = bool(failing and failing["segment"] == name and failing["sequence"] == seq)
        rows = []
        for n, value in enumerate(fields):
            if n == 0 or value == "":
                if seg_fail and failing.get("field") == n and n:
                    rows.append(_field_row(version, name, n, "", enc, reveal, True))
                continue
            rows.append(_field_row(version, name, n, value, enc, reveal,
                                   seg_fail and failing.get("field") == n))
        if seg_fail and failing.get("field") and failing["field"] >= len(fields):
            rows.append(_field_row(version, name, failing["field"], "", enc, reveal, True))
        out.append({"name": name, "sequence": seq, "line": line_no,
                    "description": SEGMENT_NAMES.get(name, "Z segment (site-defined)" if name.startswith("Z") else ""),
                    "fields": rows, "failing": seg_fail})
    return out


def _field_row(version, seg, n, value, enc, reveal, failing) -> dict:
    label, hover = field_title(version, seg, n)
    hidden = not reveal and _masked(seg, n) and value != ""
    comps = []
    if not hidden and value and not (seg in ("MSH", "FHS", "BHS") and n in (1, 2)):
        names = field_info(version, seg, n)["components"]
        reps = value.split(enc.repetition) if enc.repetition else [value]
        for r_i, rep in enumerate(reps):
            parts = rep.split(enc.component) if enc.component else [rep]
            comps.append([{"value": p, "title": (f"{seg}-{n}.{c_i + 1} {names[c_i]}" if c_i < len(names)
                                                   else f"{seg}-{n}.{c_i + 1}")}
                          for c_i, p in enumerate(parts)])
    return {"number": n, "id": f"{seg}-{n}", "label": label, "title": hover,
            "value": MASK if hidden else value, "masked": hidden, "repetitions": comps,
            "failing": failing, "repsep": enc.repetition, "compsep": enc.component}


def failing_offsets(raw_text: str, loc: dict | None) -> tuple[int, int, int] | None:
    """(line number, start, end) character offsets of the failing field in the editor text
    (segments joined by newlines), so the page can point at and select it."""
    if not loc or not loc.get("field"):
        return None
    segs, enc = _encoding(raw_text)
    pos = 0
    seen = 0
    for line_no, s in enumerate(segs, start=1):
        name = s[:3]
        if name == loc["segment"]:
            seen += 1
            if seen == loc["sequence"]:
                n = loc["field"]
                parts = s.split(enc.field)
                if name in ("MSH", "FHS", "BHS"):
                    idx = n - 1  # parts[1] is MSH-2
                else:
                    idx = n
                if idx < 1:
                    return line_no, pos, pos + len(s)
                if idx >= len(parts):
                    return line_no, pos + len(s), pos + len(s)
                start = pos + len(enc.field.join(parts[:idx])) + len(enc.field)
                return line_no, start, start + len(parts[idx])
        pos += len(s) + 1
    return None


# ---------------------------------------------------------------------------------------------
# dashboard


def _channel_names(request: Request, conn) -> list[str]:
    """Configured channels; without configuration (``interface web`` elsewhere), those seen."""
    names = [c.name for c in (getattr(request.app.state, "channels", None) or [])]
    if not names:
        names = sorted(r[0] for r in conn.execute(select(messages.c.channel).distinct().limit(200)))
    return names


RATE_WINDOW = 300  # seconds: the dashboard's "messages per minute" looks at the last 5 minutes
TOTALS_TTL = 15.0  # seconds; message totals scan the journal, so the 5 s refresh reuses them


def _message_totals(request: Request, conn) -> dict[str, dict[str, int]]:
    """Stored messages per channel and status, cached briefly on the app (a full scan of the
    journal on a busy system; live figures come from the runtime counters and the queue)."""
    cached = getattr(request.app.state, "_pages_totals", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < TOTALS_TTL:
        return cached[1]
    totals: dict[str, dict[str, int]] = {}
    for ch, status, n in conn.execute(select(messages.c.channel, messages.c.status, func.count())
                                      .group_by(messages.c.channel, messages.c.status)):
        totals.setdefault(ch, {})[status] = n
    request.app.state._pages_totals = (now, totals)
    return totals


def dashboard_data(request: Request) -> dict:
    now = _now(request)
    runtime = getattr(request.app.state, "runtime", None)
    chans = {c.name: c for c in (getattr(request.app.state, "channels", None) or [])}
    with _reader(request).connect() as conn:
        names = _channel_names(request, conn)
        by_status = _message_totals(request, conn)
        queue_rows: dict[str, dict] = {}
        for ch, status, n, oldest in conn.execute(
                select(work_items.c.channel, work_items.c.status, func.count(), func.min(work_items.c.created_at))
                .where(work_items.c.status.in_(queue.UNFINISHED))
                .group_by(work_items.c.channel, work_items.c.status)):
            q = queue_rows.setdefault(ch, {"pending": 0, "held": 0, "error": 0, "oldest": None})
            q[status] = n
            o = _aware(oldest)
            if status in ("pending", "error") and o is not None and (q["oldest"] is None or o < q["oldest"]):
                q["oldest"] = o
        # arrival rate per channel over the last RATE_WINDOW (an index range on received_at)
        since = now - timedelta(seconds=RATE_WINDOW)
        recent = dict(conn.execute(select(messages.c.channel, func.count())
                                   .where(messages.c.received_at >= since)
                                   .group_by(messages.c.channel)).all())
        recent_events = [dict(r._mapping) for r in conn.execute(
            select(events).order_by(events.c.id.desc()).limit(10))]
        conn.rollback()
    names += [n for n in sorted(set(by_status) | set(queue_rows)) if n not in names]
    rows = []
    for name in names:
        state = runtime.channel_state(name) if runtime is not None else None
        counters = (state or {}).get("counters", {})
        db = by_status.get(name, {})
        q = queue_rows.get(name, {"pending": 0, "held": 0, "error": 0, "oldest": None})
        age = (now - q["oldest"]).total_seconds() if q["oldest"] else None
        problems = []
        ch = chans.get(name)
        if runtime is not None and ch is not None and not state["listening"]:
            problems.append("not listening")
        if q["error"]:
            problems.append(f"{q['error']} in error queue")
        if age is not None and age > STALE_QUEUE_SECONDS:
            problems.append(f"oldest item waiting {fmt_age(age)}")
        rows.append({
            "name": name, "description": getattr(ch, "description", "") or "",
            "configured": ch is not None, "state": state, "counters": counters,
            "received": counters.get("received"),
            # as the channels API counts it: applied inline / on_process is accepted too
            "accepted": runtime_counters(counters)["accepted"] if counters else None,
            "rejected": counters.get("rejected"), "duplicates": counters.get("duplicate"),
            "quarantined": counters.get("quarantined"),
            "db": db, "db_total": sum(db.values()), "queue": q, "queue_depth": q["pending"] + q["held"],
            "oldest_age": fmt_age(age), "problems": problems,
            "rate_per_minute": round(recent.get(name, 0) * 60 / RATE_WINDOW, 1),
        })
    return {"channels": rows, "events": recent_events, "now": now, "runtime": runtime is not None,
            "started_at": getattr(runtime, "started_at", None)}


@router.get("/", response_class=HTMLResponse)
@html_errors
def dashboard(request: Request, user: User = Depends(ANY)):
    return _render(request, "dashboard.html", dashboard_data(request))


@router.get("/dashboard/channels", response_class=HTMLResponse)
@html_errors
def dashboard_fragment(request: Request, user: User = Depends(ANY)):
    """The channel table alone (htmx refreshes it every few seconds)."""
    return _render(request, "_channels.html", dashboard_data(request))


# ---------------------------------------------------------------------------------------------
# message browser


def _message_filters(mrn, control_id, type_, status, channel, since, until) -> tuple[list, dict]:
    params = {"mrn": _clean(mrn, 128), "control_id": _clean(control_id, 199), "type": _clean(type_, 32),
              "status": _clean(status, 16), "channel": _clean(channel, 64),
              "since": _clean(since, 40), "until": _clean(until, 40)}
    conds = []
    if params["mrn"]:
        conds.append(messages.c.patient_id == params["mrn"])
    if params["control_id"]:
        conds.append(messages.c.control_id == params["control_id"])
    if params["type"]:
        t = params["type"].upper()
        if "^" in t and not t.endswith("^"):
            conds.append(messages.c.message_type == t)
        else:  # "ADT" or "ADT^": every trigger of that type
            conds.append(messages.c.message_type.like(t.rstrip("^").replace("%", "").replace("_", "") + "^%"))
    if params["status"]:
        conds.append(messages.c.status == params["status"])
    if params["channel"]:
        conds.append(messages.c.channel == params["channel"])
    s = _parse_dt(params["since"], "since")
    u = _parse_dt(params["until"], "until")
    if s is not None:
        conds.append(messages.c.received_at >= s)
    if u is not None:
        conds.append(messages.c.received_at < u)
    return conds, params


def keyset(conn, table, cols, conds, before: int | None, after: int | None, limit: int):
    """One page ordered by id descending. ``before``: ids below it (older); ``after``: ids above
    it (newer). Returns (rows, older_cursor, newer_cursor)."""
    q = select(*cols).where(*conds)
    if after is not None:
        rows = conn.execute(q.where(table.c.id > after).order_by(table.c.id.asc()).limit(limit + 1)).all()
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        older = rows[-1].id if rows else None
        newer = rows[0].id if rows and more_newer else None
        return rows, older, newer
    if before is not None:
        q = q.where(table.c.id < before)
    rows = conn.execute(q.order_by(table.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    older = rows[-1].id if rows and more else None
    newer = rows[0].id if rows and before is not None else None
    return rows, older, newer


@router.get("/messages", response_class=HTMLResponse)
@html_errors
def message_list(request: Request, user: User = Depends(MESSAGES),
                 mrn: str | None = None, control_id: str | None = None,
                 type: str | None = None, status: str | None = None, channel: str | None = None,
                 since: str | None = None, until: str | None = None,
                 before: int | None = Query(None, ge=1, le=MAX_ID), after: int | None = Query(None, ge=0, le=MAX_ID)):
    conds, params = _message_filters(mrn, control_id, type, status, channel, since, until)
    cols = [messages.c.id, messages.c.channel, messages.c.received_at, messages.c.control_id,
            messages.c.message_type, messages.c.patient_id, messages.c.status, messages.c.ack_code,
            messages.c.error_text, messages.c.parent_id, messages.c.sending_application]
    with _reader(request).connect() as conn:
        rows, older, newer = keyset(conn, messages, cols, conds, before, after, PAGE_SIZE)
        names = _channel_names(request, conn)
    if params["mrn"]:
        auth.audit_now(request, action="search", target_type="message", detail={"mrn": mask(params["mrn"])})
    return _render(request, "messages.html", {
        "rows": rows, "params": params, "statuses": MESSAGE_STATUSES, "channels": names,
        "older": _qs(params, before=older) if older else None,
        "newer": _qs(params, after=newer) if newer else None,
        "first_page": before is None and after is None, "mask": mask, "newest": _qs(params),
    })


def _load_message(conn, message_id: int):
    row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no message {message_id}")
    return row


def _message_history(conn, msg) -> dict:
    """Work items (this message's, or those moved to its resubmitted copies), their attempts,
    the clerk actions on them, related copies, and what the message changed."""
    copies = conn.execute(select(messages.c.id, messages.c.status, messages.c.received_at)
                          .where(messages.c.parent_id == msg.id).order_by(messages.c.id)).all()
    ids = [msg.id] + [c.id for c in copies]
    items = conn.execute(select(work_items).where(work_items.c.message_id.in_(ids))
                         .order_by(work_items.c.id)).all()
    item_ids = [i.id for i in items]
    attempts = {}
    actions = []
    if item_ids:
        for a in conn.execute(select(work_attempts).where(work_attempts.c.item_id.in_(item_ids))
                              .order_by(work_attempts.c.id)):
            attempts.setdefault(a.item_id, []).append(a)
        actions = conn.execute(select(audit).where(audit.c.target_type == "work_item",
                                                   audit.c.target_id.in_([str(i) for i in item_ids]))
                               .order_by(audit.c.id)).all()
    msg_actions = conn.execute(select(audit).where(audit.c.target_type == "message",
                                                   audit.c.target_id == str(msg.id), audit.c.action != "view")
                               .order_by(audit.c.id.desc()).limit(50)).all()
    changes = []
    try:
        from .chart_schema import chart_history as h

        changes = conn.execute(select(h).where(h.c.message_id == msg.id).order_by(h.c.id).limit(500)).all()
    except ImportError:  # pragma: no cover
        pass
    doc_changes = []
    try:
        from .document_schema import document_versions as dv

        doc_changes = conn.execute(select(dv.c.document_number, dv.c.version, dv.c.event, dv.c.action, dv.c.at)
                                   .where(dv.c.message_id == msg.id).order_by(dv.c.id)).all()
    except ImportError:  # pragma: no cover
        pass
    parent = None
    if msg.parent_id:
        parent = conn.execute(select(messages.c.id, messages.c.status).where(messages.c.id == msg.parent_id)).first()
    return {"copies": copies, "work_items": items, "attempts": attempts, "actions": actions,
            "message_actions": msg_actions, "changes": changes, "doc_changes": doc_changes,
            "parent": parent}


def _message_page(request: Request, message_id: int, tab: str, reveal: bool, status_code: int = 200,
                  error: str | None = None) -> HTMLResponse:
    from .message import decode

    if tab not in ("parsed", "raw", "ack", "history"):
        tab = "parsed"
    with _reader(request).connect() as conn:
        msg = _load_message(conn, message_id)
        history = _message_history(conn, msg)
        conn.rollback()
    decoded = decode(msg.raw)
    item_errors = [i for i in history["work_items"] if i.status in ("error", "held")]
    failing = parse_location(item_errors[0].error_location) if item_errors else None
    ack_text = msg.ack.decode("utf-8", "replace") if msg.ack else ""
    return _render(request, "message.html", {
        "m": msg, "tab": tab, "reveal": reveal, "error": error, "warning": decoded.warning,
        "raw": masked_text(decoded.text, reveal),
        "parsed": parsed_view(decoded.text, msg.version or "2.5", reveal, failing) if tab == "parsed" else [],
        "ack": masked_text(ack_text, True) if ack_text else "",
        "ack_parsed": parsed_view(ack_text, msg.version or "2.5", True) if ack_text and tab == "ack" else [],
        "h": history, "mask": mask, "failing": failing, "mrn": msg.patient_id if reveal else mask(msg.patient_id),
        "tabs": [("parsed", "Parsed"), ("raw", "Raw"), ("ack", "ACK"), ("history", "History")],
    }, status_code=status_code)


@router.get("/messages/{message_id}", response_class=HTMLResponse)
@html_errors
def message_view(request: Request, message_id: int, tab: str = "parsed", user: User = Depends(MESSAGES)):
    """A message, identifiers masked (reveal with a reason: POST .../reveal); the view is audited."""
    response = _message_page(request, message_id, tab, reveal=False)
    auth.audit_now(request, action="view", target_type="message", target_id=message_id)
    return response


@router.post("/messages/{message_id}/reveal", response_class=HTMLResponse)
@html_errors
def message_reveal(request: Request, message_id: int, reason: str = Form(""), tab: str = Form("parsed"),
                   user: User = Depends(MESSAGES)):
    """Show the message unmasked, once, for the reason given; the reveal is audited (the rule
    of ``interface.masking``)."""
    try:
        reason = masking.check_reveal(user.role, masking.MESSAGE, True, reason)
    except masking.RevealRefused as exc:
        if exc.status != 400:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
        return _message_page(request, message_id, tab, reveal=False, status_code=400,
                             error="Give a reason to reveal patient identifiers.")
    with _engine(request).begin() as conn:
        _load_message(conn, message_id)
        masking.record_reveal(conn, user=user.name, target_type="message", target_id=message_id,
                              reason=reason, now=_now(request))
    return _message_page(request, message_id, tab, reveal=True)


# ---------------------------------------------------------------------------------------------
# error queue


NOTICES = {"retry": "Put back in the queue", "discard": "Discarded", "resubmit": "Edited copy resubmitted"}


@router.get("/errors", response_class=HTMLResponse)
@html_errors
def error_list(request: Request, user: User = Depends(ERRORS), status: str = "error",
               reason: str | None = None, channel: str | None = None,
               before: int | None = Query(None, ge=1, le=MAX_ID), after: int | None = Query(None, ge=0, le=MAX_ID),
               done: str | None = None, n: int | None = Query(None, ge=0), failed: str | None = None):
    statuses = [s for s in (status or "error").split(",") if s in ITEM_STATUSES] or ["error"]
    params = {"status": ",".join(statuses), "reason": _clean(reason, 64), "channel": _clean(channel, 64)}
    base = [work_items.c.status.in_(statuses)]
    if params["channel"]:
        base.append(work_items.c.channel == params["channel"])
    conds = list(base)
    if params["reason"]:
        conds.append(work_items.c.reason == params["reason"])
    cols = [work_items.c.id, work_items.c.channel, work_items.c.destination, work_items.c.status,
            work_items.c.reason, work_items.c.error_location, work_items.c.last_error, work_items.c.attempts,
            work_items.c.updated_at, work_items.c.created_at, work_items.c.message_id,
            messages.c.message_type, messages.c.control_id, messages.c.patient_id]
    with _reader(request).connect() as conn:
        groups = conn.execute(select(work_items.c.reason, func.count()).where(*base)
                              .group_by(work_items.c.reason).order_by(func.count().desc())).all()
        q_conds = conds + [messages.c.id == work_items.c.message_id]
        rows, older, newer = keyset(conn, work_items, cols, q_conds, before, after, PAGE_SIZE)
        names = _channel_names(request, conn)
    notice = None
    if done in NOTICES:
        notice = f"{NOTICES[done]}: {n or 0} item(s)."
        bad = [x for x in (failed or "").split(",") if x.isdigit()][:100]
        if bad:
            notice += f" Not done (already handled or not in a state that allows it): item {', '.join(bad)}."
    return _render(request, "errors.html", {
        "rows": rows, "groups": groups, "params": params, "statuses": ITEM_STATUSES, "channels": names,
        "older": _qs(params, before=older) if older else None,
        "newer": _qs(params, after=newer) if newer else None, "mask": mask, "notice": notice,
        "total": sum(g[1] for g in groups),
    })


def _item_page(request: Request, item_id: int, *, reveal: bool = False, error: str | None = None,
               status_code: int = 200, edited: str | None = None, notice: str | None = None) -> HTMLResponse:
    from .message import decode

    with _reader(request).connect() as conn:
        item = conn.execute(select(work_items).where(work_items.c.id == item_id)).first()
        if item is None:
            raise HTTPException(status_code=404, detail=f"no work item {item_id}")
        msg = _load_message(conn, item.message_id)
        attempts = conn.execute(select(work_attempts).where(work_attempts.c.item_id == item_id)
                                .order_by(work_attempts.c.id)).all()
        actions = conn.execute(select(audit).where(audit.c.target_type == "work_item",
                                                   audit.c.target_id == str(item_id)).order_by(audit.c.id)).all()
        conn.rollback()
    text = decode(msg.raw).text
    loc = parse_location(item.error_location)
    segs, _enc = _encoding(text)
    editor_text = edited if edited is not None else "\n".join(segs)
    offsets = failing_offsets(editor_text, loc) if reveal else None
    failing_segment = None
    if loc:
        for seg in parsed_view(text, msg.version or "2.5", reveal, loc):
            if seg["failing"]:
                failing_segment = seg
                break
    field_label = field_title(msg.version or "2.5", loc["segment"], loc["field"])[0] if loc and loc["field"] else ""
    return _render(request, "error_item.html", {
        "item": item, "m": msg, "attempts": attempts, "actions": actions, "loc": loc,
        "field_label": field_label, "failing_segment": failing_segment, "reveal": reveal,
        "raw": masked_text(text, reveal), "editor_text": editor_text if reveal else "",
        "offsets": offsets, "error": error, "notice": notice, "mask": mask,
        "actionable": item.status in ("error", "held"),
        "mrn": msg.patient_id if reveal else mask(msg.patient_id),
    }, status_code=status_code)


@router.get("/errors/{item_id}", response_class=HTMLResponse)
@html_errors
def error_item(request: Request, item_id: int, user: User = Depends(ERRORS), done: str | None = None):
    response = _item_page(request, item_id, notice=NOTICES.get(done or ""))
    with _reader(request).connect() as conn:
        message_id = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).scalar()
    auth.audit_now(request, action="view", target_type="message", target_id=message_id,
                   detail={"work_item": item_id})
    return response


@router.post("/errors/{item_id}/reveal", response_class=HTMLResponse)
@html_errors
def error_item_reveal(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(ERRORS)):
    reason = (reason or "").strip()
    if not reason:
        return _item_page(request, item_id, error="Give a reason to reveal the message.", status_code=400)
    with _engine(request).begin() as conn:
        item = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).first()
        if item is None:
            raise HTTPException(status_code=404, detail=f"no work item {item_id}")
        record_audit(conn, user=user, action="reveal", target_type="message", target_id=item.message_id,
                     reason=reason[:1000], detail={"work_item": item_id}, now=_now(request))
    return _item_page(request, item_id, reveal=True)


def _act(request: Request, user: User, item_id: int, fn) -> str | None:
    """Run one clerk action in its own transaction; the error text if it cannot be done."""
    try:
        with _engine(request).begin() as conn:
            fn(conn, item_id, user.name, _now(request))
    except queue.ActionError as exc:
        return str(exc)
    return None


def _retry(conn, item_id, name, now):
    queue.retry_item(conn, item_id, user=name, now=now)


def _discarder(reason: str):
    def run(conn, item_id, name, now):
        queue.discard_item(conn, item_id, user=name, reason=reason, now=now)

    return run


@router.post("/errors/{item_id}/retry")
@html_errors
def error_retry(request: Request, item_id: int, user: User = Depends(ERRORS)):
    err = _act(request, user, item_id, _retry)
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=retry", status_code=303)


@router.post("/errors/{item_id}/discard")
@html_errors
def error_discard(request: Request, item_id: int, reason: str = Form(""), user: User = Depends(ERRORS)):
    reason = (reason or "").strip()
    if not reason:
        return _item_page(request, item_id, error="A reason is required to discard.", status_code=400)
    err = _act(request, user, item_id, _discarder(reason[:1000]))
    if err:
        return _item_page(request, item_id, error=err, status_code=409)
    return RedirectResponse(f"/errors/{item_id}?done=discard", status_code=303)


def _editor_bytes(text: str, original: bytes) -> bytes:
    """Editor text (one segment a line) -> HL7 bytes (CR-separated) in the original's charset."""
    from .message import decode

    segs = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    body = "\r".join(segs) + "\r"
    charset = decode(original).charset or "utf-8"
    try:
        return body.encode(charset)
    except (UnicodeEncodeError, LookupError):
        return body.encode("utf-8")


@router.post("/errors/{item_id}/resubmit")
@html_errors
def error_resubmit(request: Request, item_id: int, raw: str = Form(""), reason: str = Form(""),
                   user: User = Depends(ERRORS)):
    """Store the edited message as a new version linked to the original and queue it in the
    failed item's place (the original is kept)."""
    if not raw.strip():
        return _item_page(request, item_id, reveal=True, error="The edited message is empty.", status_code=400)
    try:
        with _engine(request).begin() as conn:
            item = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).first()
            if item is None:
                raise HTTPException(status_code=404, detail=f"no work item {item_id}")
            original = conn.execute(select(messages.c.raw).where(messages.c.id == item.message_id)).scalar_one()
            data = _editor_bytes(raw, original)
            queue.resubmit_item(conn, item_id, data, user=user.name, now=_now(request),
                                reason=(reason or "").strip()[:1000] or None,
                                channels=getattr(request.app.state, "channels", None))
    except queue.ActionError as exc:
        return _item_page(request, item_id, reveal=True, error=str(exc), status_code=409, edited=raw)
    return RedirectResponse(f"/errors/{item_id}?done=resubmit", status_code=303)


@router.post("/errors/bulk")
@html_errors
def error_bulk(request: Request, user: User = Depends(ERRORS), action: str = Form(""),
               ids: list[int] = Form(default=[]), reason: str = Form(""), back: str = Form("")):
    """Retry or discard exactly the checked items (each in its own transaction, so one stale
    item does not stop the others); reports how many were done and which were not."""
    if action not in ("retry", "discard"):
        raise HTTPException(status_code=400, detail="action must be retry or discard")
    if not ids:
        raise HTTPException(status_code=400, detail="select at least one item")
    reason = (reason or "").strip()
    if action == "discard" and not reason:
        raise HTTPException(status_code=400, detail="a reason is required to discard")
    fn = _retry if action == "retry" else _discarder(reason[:1000])
    ok, failed = 0, []
    for item_id in dict.fromkeys(ids):  # each selected row once, in the order shown
        err = _act(request, user, item_id, fn)
        if err:
            failed.append(str(item_id))  # ids only: the page never echoes free text from a URL
        else:
            ok += 1
    params = {k: v for k, v in parse_qsl(back) if k in ("status", "reason", "channel")}
    target = "/errors?" + urlencode({**params, "done": action, "n": ok, **({"failed": ",".join(failed)} if failed else {})})
    return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------------------------------------
# patients and documents


@router.get("/patients", response_class=HTMLResponse)
@html_errors
def patient_search(request: Request, user: User = Depends(CHARTS), family: str | None = None,
                   given: str | None = None, birth_date: str | None = None, mrn: str | None = None):
    from . import chart

    family, given, birth_date, mrn = (_clean(family, 100), _clean(given, 100), _clean(birth_date, 10),
                                      _clean(mrn, 128))
    if mrn:
        return RedirectResponse("/patients/" + quote(mrn, safe=""), status_code=303)
    error = None
    found = None
    if birth_date and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", birth_date):
        error = "Birth date must be YYYY, YYYY-MM or YYYY-MM-DD."
    elif family or given or birth_date:
        with _reader(request).connect() as conn:
            found = chart.search_patients(conn, family=family, given=given, birth_date=birth_date, limit=100)
        auth.audit_now(request, action="search", target_type="patient",
                       detail={k: v for k, v in (("family", family), ("given", given),
                                                 ("birth_date", birth_date)) if v})
    return _render(request, "patients.html", {
        "found": found, "params": {"family": family or "", "given": given or "", "birth_date": birth_date or ""},
        "error": error}, status_code=400 if error else 200)


def _chart_page(request: Request, mrn: str, reveal: bool, status_code: int = 200,
                error: str | None = None) -> HTMLResponse:
    from . import chart

    with _reader(request).connect() as conn:
        record = chart.get_chart(conn, mrn)
        if record is None:
            raise HTTPException(status_code=404, detail="no patient with this MRN")
        hist = chart.history(conn, mrn)
        conn.rollback()
    return _render(request, "chart.html", {
        "c": record, "history": _history_rows(list(reversed(hist))[:300], reveal),
        "history_total": len(hist), "reveal": reveal, "masked_fields": HISTORY_MASKED,
        "mask": mask, "error": error, "fmt_hl7": _hl7_time}, status_code=status_code)


HISTORY_MASKED = masking.HISTORY_MASKED
_history_rows = masking.history_rows


@router.get("/patients/{mrn}", response_class=HTMLResponse)
@html_errors
def patient_chart(request: Request, mrn: str, user: User = Depends(CHARTS)):
    """The chart; viewing it is audited. Identifiers other than the MRN stay masked until revealed."""
    response = _chart_page(request, mrn, reveal=False)
    auth.audit_now(request, action="view", target_type="patient", target_id=mrn, detail=request.url.path)
    return response


@router.post("/patients/{mrn}/reveal", response_class=HTMLResponse)
@html_errors
def patient_reveal(request: Request, mrn: str, reason: str = Form(""), user: User = Depends(CHARTS)):
    try:
        reason = masking.check_reveal(user.role, masking.CHART, True, reason)
    except masking.RevealRefused as exc:
        if exc.status != 400:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
        return _chart_page(request, mrn, reveal=False, status_code=400,
                           error="Give a reason to reveal the identifiers.")
    response = _chart_page(request, mrn, reveal=True)
    auth.audit_now(request, action="reveal", target_type="patient", target_id=mrn, reason=reason[:1000])
    return response


def _document_settings(request: Request):
    settings = getattr(request.app.state, "document_settings", None)
    if settings is None:
        from .documents import DocumentSettings

        settings = DocumentSettings()
    return settings


@router.get("/documents/{number}", response_class=HTMLResponse)
@html_errors
def document_view(request: Request, number: str, user: User = Depends(DOCUMENTS),
                  version: int | None = Query(None, ge=1), namespace: str | None = None):
    from . import documents

    with _reader(request).connect() as conn:
        entry = _document_entry(conn, number, namespace, _now(request))
        asked = (namespace or "").strip()  # kept in the page's links (the number alone may be ambiguous)
        namespace = entry["namespace"] or entry["universal_id"]
        text = None
        media = entry.get("content_type") or ""
        viewer = None
        if entry.get("content_sha256") or version:
            got = documents.get_content(conn, number, _document_settings(request), version=version,
                                        namespace=namespace)
            if got is not None:
                data, media = got
                base = media.split(";")[0].strip().lower()
                if base == "application/pdf":
                    viewer = "pdf"
                elif base in ("text/html", "application/xhtml+xml"):
                    viewer = "html"
                elif base.startswith("text/") or base in ("application/rtf", "application/xml"):
                    viewer = "text"
                    m = re.search(r"charset=([\w.-]+)", media)
                    try:
                        text = data.decode(m.group(1) if m else "utf-8", "replace")
                    except LookupError:
                        text = data.decode("utf-8", "replace")
                elif base.startswith("image/") and base != "image/svg+xml":
                    viewer = "image"
                else:
                    viewer = "download"
        conn.rollback()
    auth.audit_now(request, action="view", target_type="document", target_id=number, detail=request.url.path)
    return _render(request, "document.html", {"d": entry, "viewer": viewer, "text": text, "media": media,
                                              "version": version, "fmt_hl7": _hl7_time,
                                              "ns": f"namespace={quote(asked)}" if asked else ""})


def _document_entry(conn, number: str, namespace: str | None, now):
    """The entry for a document page: 404 unknown, 409 when the number needs ``?namespace=``."""
    from . import documents
    from .document_ids import AmbiguousDocument

    try:
        entry = documents.get_document(conn, number, now=now, namespace=(namespace or "").strip() or None)
    except AmbiguousDocument as exc:
        raise HTTPException(status_code=409, detail=f"{exc}: add ?namespace=") from None
    if entry is None:
        raise HTTPException(status_code=404, detail="no such document")
    return entry


@router.get("/documents/{number}/content")
@html_errors
def document_content(request: Request, number: str, user: User = Depends(DOCUMENTS),
                     version: int | None = Query(None, ge=1), namespace: str | None = None):
    """The document bytes. Anything but PDF and images is sandboxed (CSP ``sandbox``: no
    scripts, no same-origin access), and nothing is sniffed into another type."""
    from . import documents

    with _reader(request).connect() as conn:
        entry = _document_entry(conn, number, namespace, None)
        got = documents.get_content(conn, number, _document_settings(request), version=version,
                                    namespace=entry["namespace"] or entry["universal_id"])
        conn.rollback()
    if got is None:
        raise HTTPException(status_code=404, detail="no content")
    data, media = got
    auth.audit_now(request, action="view_content", target_type="document", target_id=number,
                   detail={"version": version} if version else None)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
               "Content-Disposition": "inline", "X-Frame-Options": "SAMEORIGIN"}
    base = media.split(";")[0].strip().lower()
    if base != "application/pdf":
        headers["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return Response(content=data, media_type=media, headers=headers)


# ---------------------------------------------------------------------------------------------
# completeness worklist and audit log


@router.get("/deficiencies", response_class=HTMLResponse)
@html_errors
def deficiencies(request: Request, user: User = Depends(DOCUMENTS), mrn: str | None = None,
                 type: str | None = None, author: str | None = None):
    from .completeness import list_deficiencies

    params = {"mrn": _clean(mrn, 128) or "", "type": _clean(type, 64) or "", "author": _clean(author, 128) or ""}
    with _reader(request).connect() as conn:
        rows = list_deficiencies(conn, mrn=params["mrn"] or None, type=params["type"] or None,
                                 author=params["author"] or None, now=_now(request))
    return _render(request, "deficiencies.html", {"rows": rows[:1000], "total": len(rows), "params": params})


@router.get("/audit", response_class=HTMLResponse)
@html_errors
def audit_page(request: Request, user: User = Depends(AUDIT), who: str | None = None,
               action: str | None = None, target_type: str | None = None, target_id: str | None = None,
               before: int | None = Query(None, ge=1, le=MAX_ID), after: int | None = Query(None, ge=0, le=MAX_ID)):
    params = {"who": _clean(who, 128), "action": _clean(action, 64), "target_type": _clean(target_type, 32),
              "target_id": _clean(target_id, 128)}
    conds = []
    if params["who"]:
        conds.append(audit.c.user == params["who"])
    if params["action"]:
        conds.append(audit.c.action == params["action"])
    if params["target_type"]:
        conds.append(audit.c.target_type == params["target_type"])
    if params["target_id"]:
        conds.append(audit.c.target_id == params["target_id"])
    with _reader(request).connect() as conn:
        rows, older, newer = keyset(conn, audit, [audit], conds, before, after, 100)
    return _render(request, "audit.html", {
        "rows": rows, "params": params,
        "older": _qs(params, before=older) if older else None,
        "newer": _qs(params, after=newer) if newer else None})


TEMPLATES.env.filters["when"] = fmt_time
TEMPLATES.env.filters["hl7time"] = _hl7_time
TEMPLATES.env.globals["segment_names"] = SEGMENT_NAMES
