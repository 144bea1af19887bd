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
``/scan``, ``/scan/...``      scanned paper: the indexing queue (:mod:`interface.web.pages_scan`)
``/audit``                    the audit trail (auditor, admin)
``/users``                    user administration (admin; :mod:`interface.web.pages_users`)
``/roi``...                   release of information (:mod:`interface.web.pages_roi`)
============================  ===============================================================

Access: every route depends on :func:`interface.web.auth.require` with the role group of
``interface.web.auth`` (admin always allowed); unsafe requests carry the session's CSRF token, which
the dependency checks. Patient identifiers are masked in messages and lists until a user reveals
them with a reason; each reveal, each chart or document view and each clerk action writes an
``audit`` row. Clerk actions call the :mod:`interface.store.workqueue` functions inside one transaction
with the acting user's name.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from interface.desk import masking, roi
from interface.desk.users import User
from interface.rules import roi as roi_rules
from interface.rules import words
from interface.store import workqueue
from interface.store.schema import events, messages, work_items
from interface.web import auth, event_words, trends_view
from interface.web.api.channels import channel_health, runtime_counters
from interface.web.auth import require

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))

PAGE_SIZE = 50
MAX_ID = 2**63 - 1
MESSAGE_STATUSES = ("accepted", "processed", "error", "rejected", "quarantined", "discarded", "resubmitted")
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


TIMEZONE_ENV = "INTERFACE_TIMEZONE"  # the hospital's time zone for every time a page shows
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


@lru_cache(maxsize=8)
def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("%s=%r is not a known time zone: pages show UTC", TIMEZONE_ENV, name)
        return timezone.utc


def display_zone() -> tzinfo:
    """The time zone pages show times in: ``INTERFACE_TIMEZONE`` (an IANA name such as
    ``Europe/Paris``), UTC when unset or unknown."""
    return _zone(os.environ.get(TIMEZONE_ENV, "").strip() or "UTC")


def zone_name(at: datetime | None = None) -> str:
    """The zone's name as pages print it (``CET``, ``UTC``), for labels such as "Times in ..."."""
    return (at or datetime.now(timezone.utc)).astimezone(display_zone()).strftime("%Z")


def fmt_time(dt: Any) -> str:
    """A stored time for display, in the hospital's time zone (:func:`display_zone`), one format
    on every page: ``2026-03-08 23:10:00 CET``. SQLite gives naive datetimes that are UTC."""
    if dt is None or dt == "":
        return ""
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            return dt
    return _aware(dt).astimezone(display_zone()).strftime(TIME_FORMAT)


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
    base = {
        "user": user,
        "csrf_token": getattr(request.state, "csrf_token", None) or "",
        "nav": _nav(user),
        "path": request.url.path,
    }
    base.update(ctx)
    resp = TEMPLATES.TemplateResponse(request, name, base, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"  # pages hold patient data: never cached
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"  # URLs carry MRNs
    return resp


# Only our own scripts and styles: message text shown on a page can never run as script.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
    "form-action 'self'"
)


def _nav(user: User | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    role = user.role
    admin = role == "admin"
    items = [("/", "Dashboard"), ("/channels", "Channels")]
    if admin or role in auth.MESSAGES:
        items.append(("/messages", "Messages"))
    if admin or role in auth.ERRORS:
        items.append(("/errors", "Error queue"))
    if admin or role in auth.CHARTS:
        items.append(("/patients", "Patients"))
    if admin or role in auth.DOCUMENTS:
        items.append(("/deficiencies", "Completeness"))
    if admin or role in auth.CHARTS:
        items.append(("/chart-prep", "Chart prep"))
    if admin or role in auth.ROI_INTAKE:
        items.append(("/roi", "Release of information"))
    if admin or role in auth.DOCUMENTS or role == "analyst":  # analysts: the batch list only
        items.append(("/scan" if admin or role in auth.DOCUMENTS else "/scan/batches", "Scanned paper"))
    if admin or role in auth.AUDIT:
        items.append(("/audit", "Audit log"))
    if admin:
        items.append(("/users", "Users"))
    return items


def _clean(value: str | None, limit: int = 200) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None


def _parse_dt(value: str | None, name: str) -> datetime | None:
    """A date or ``datetime-local`` form value, read in the hospital's time zone (the one pages
    show times in, :func:`display_zone`); 400 when unreadable."""
    value = _clean(value, 40)
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            status_code=400, detail=f"{name}: not a date/time (use YYYY-MM-DD HH:MM)"
        ) from None
    return (dt.replace(tzinfo=display_zone()) if dt.tzinfo is None else dt).astimezone(timezone.utc)


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
    template, a link back to the dashboard. When :func:`~interface.web.auth.require` refused the
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
    media = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}.get(
        path.suffix.lstrip("."), "text/plain"
    )
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------------------------------
# HL7 field names (hl7apy's tables) and masking


SEGMENT_NAMES = {
    "MSH": "Message Header",
    "EVN": "Event Type",
    "PID": "Patient Identification",
    "PD1": "Patient Additional Demographic",
    "NK1": "Next of Kin / Associated Parties",
    "PV1": "Patient Visit",
    "PV2": "Patient Visit - Additional Information",
    "OBX": "Observation/Result",
    "OBR": "Observation Request",
    "ORC": "Common Order",
    "AL1": "Patient Allergy Information",
    "IAM": "Patient Adverse Reaction Information",
    "DG1": "Diagnosis",
    "DRG": "Diagnosis Related Group",
    "PR1": "Procedures",
    "GT1": "Guarantor",
    "IN1": "Insurance",
    "IN2": "Insurance Additional Information",
    "IN3": "Insurance Additional Information, Certification",
    "ROL": "Role",
    "MRG": "Merge Patient Information",
    "TXA": "Transcription Document Header",
    "NTE": "Notes and Comments",
    "MSA": "Message Acknowledgment",
    "ERR": "Error",
    "SFT": "Software",
    "UB1": "UB82",
    "UB2": "Uniform Billing Data",
    "ACC": "Accident",
    "DB1": "Disability",
    "ZPD": "Site-defined segment (Z)",
    "FHS": "File Header",
    "FTS": "File Trailer",
    "BHS": "Batch Header",
    "BTS": "Batch Trailer",
    "QRD": "Original-Style Query Definition",
    "ARV": "Access Restriction",
    "PRT": "Participation Information",
    "SPM": "Specimen",
}

# Which fields are masked, for whom, and how a reveal is audited: interface.desk.masking (one rule
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
    return {
        "segment": seg,
        "sequence": int(seqno or 1),
        "field": int(fieldno) if fieldno else None,
        "repetition": int(rep or 1),
        "component": int(comp) if comp else None,
        "subcomponent": int(sub) if sub else None,
        "text": text.strip(),
    }


_masked = masking.masked_field


_split_fields = masking.split_fields  # one copy: the masking rule reads fields the same way
_encoding = masking.segments_and_encoding


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
            rows.append(
                _field_row(version, name, n, value, enc, reveal, seg_fail and failing.get("field") == n)
            )
        if seg_fail and failing.get("field") and failing["field"] >= len(fields):
            rows.append(_field_row(version, name, failing["field"], "", enc, reveal, True))
        out.append(
            {
                "name": name,
                "sequence": seq,
                "line": line_no,
                "description": SEGMENT_NAMES.get(
                    name, "Z segment (site-defined)" if name.startswith("Z") else ""
                ),
                "fields": rows,
                "failing": seg_fail,
            }
        )
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
            comps.append(
                [
                    {
                        "value": p,
                        "title": (
                            f"{seg}-{n}.{c_i + 1} {names[c_i]}"
                            if c_i < len(names)
                            else f"{seg}-{n}.{c_i + 1}"
                        ),
                    }
                    for c_i, p in enumerate(parts)
                ]
            )
    return {
        "number": n,
        "id": f"{seg}-{n}",
        "label": label,
        "title": hover,
        "value": MASK if hidden else value,
        "masked": hidden,
        "repetitions": comps,
        "failing": failing,
        "repsep": enc.repetition,
        "compsep": enc.component,
    }


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
    for ch, status, n in conn.execute(
        select(messages.c.channel, messages.c.status, func.count()).group_by(
            messages.c.channel, messages.c.status
        )
    ):
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
            .where(work_items.c.status.in_(workqueue.UNFINISHED))
            .group_by(work_items.c.channel, work_items.c.status)
        ):
            q = queue_rows.setdefault(ch, {"pending": 0, "held": 0, "error": 0, "oldest": None})
            q[status] = n
            o = _aware(oldest)
            if status in ("pending", "error") and o is not None and (q["oldest"] is None or o < q["oldest"]):
                q["oldest"] = o
        # arrival rate per channel over the last RATE_WINDOW (an index range on received_at)
        since = now - timedelta(seconds=RATE_WINDOW)
        recent = dict(
            conn.execute(
                select(messages.c.channel, func.count())
                .where(messages.c.received_at >= since)
                .group_by(messages.c.channel)
            ).all()
        )
        recent_events = [
            dict(r._mapping) for r in conn.execute(select(events).order_by(events.c.id.desc()).limit(10))
        ]
        waiting = workqueue.waiting_by_channel(conn)
        trend = trends_view.trend(conn, now, window=request.query_params.get("trend", "hour"))
        conn.rollback()
    for e in recent_events:  # in words, with a link (interface.web.event_words)
        e["words"] = event_words.describe(e["kind"], e["channel"], e["peer"], e["detail"])
    names += [n for n in sorted(set(by_status) | set(queue_rows) | set(waiting)) if n not in names]
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
        w = waiting.get(name, workqueue.Waiting())
        must_act = bool(problems)  # down, failed or stale: someone must act
        problems += _waiting_problems(w, now)
        health = channel_health(
            listening=state["listening"] if (runtime is not None and ch is not None) else None,
            errored=q["error"],
            blocked=w.blocked,
            held=w.held,
        )
        if health == "ok" and problems:  # an item waiting too long
            health = "degraded"
        rows.append(
            {
                "name": name,
                "description": getattr(ch, "description", "") or "",
                "configured": ch is not None,
                "state": state,
                "counters": counters,
                "received": counters.get("received"),
                # as the channels API counts it: applied inline / on_process is accepted too
                "accepted": runtime_counters(counters)["accepted"] if counters else None,
                "rejected": counters.get("rejected"),
                "duplicates": counters.get("duplicate"),
                "quarantined": counters.get("quarantined"),
                "db": db,
                "db_total": sum(db.values()),
                "queue": q,
                "queue_depth": q["pending"] + q["held"],
                "oldest_age": fmt_age(age),
                "problems": problems,
                "health": health,
                # the card's badge: someone must act / items only wait (blocked, held) / OK
                "badge": "Needs attention" if must_act else ("Degraded" if problems else "OK"),
                "blocked": w.blocked,
                "held": w.held,
                "oldest_waiting_age": fmt_age((now - w.oldest).total_seconds()) if w.oldest else "",
                "rate_per_minute": round(recent.get(name, 0) * 60 / RATE_WINDOW, 1),
            }
        )
    return {
        "channels": rows,
        "events": recent_events,
        "trend": trend,
        "now": now,
        "runtime": runtime is not None,
        "started_at": getattr(runtime, "started_at", None),
    }


def _waiting_problems(w, now: datetime) -> list[str]:
    """The dashboard's lines for items that wait: blocked behind an error, held."""
    out = []
    if w.blocked:
        age = fmt_age((now - w.oldest_blocked).total_seconds()) if w.oldest_blocked else ""
        out.append(f"{w.blocked} blocked behind an error" + (f", oldest {age}" if age else ""))
    if w.held:
        age = fmt_age((now - w.oldest_held).total_seconds()) if w.oldest_held else ""
        out.append(f"{w.held} held for an unknown patient" + (f", oldest {age}" if age else ""))
    return out


def roi_aging(request: Request) -> dict:
    """Open release-of-information requests by age, and the overdue and soon-due ones
    (:func:`interface.rules.roi.aging_summary`: no patient data, so no audit row)."""
    settings = getattr(request.app.state, "roi_settings", None) or roi_rules.settings_or_default()
    with _reader(request).connect() as conn:
        rows = roi.queue(conn, settings, _now(request).date(), limit=1000)
        conn.rollback()
    return roi_rules.aging_summary(rows)


@router.get("/", response_class=HTMLResponse)
@html_errors
def dashboard(request: Request, user: User = Depends(ANY)):
    ctx = dashboard_data(request)
    if user.role == "admin" or user.role in auth.ROI_INTAKE:  # who may see ROI work
        ctx["roi"] = roi_aging(request)
    return _render(request, "dashboard.html", ctx)


@router.get("/dashboard/channels", response_class=HTMLResponse)
@html_errors
def dashboard_fragment(request: Request, user: User = Depends(ANY)):
    """The channel table alone (htmx refreshes it every few seconds)."""
    return _render(request, "_channels.html", dashboard_data(request))


# ---------------------------------------------------------------------------------------------
# message browser


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


TEMPLATES.env.filters["when"] = fmt_time
TEMPLATES.env.filters["word"] = lambda code, table: words.word(table, code)
TEMPLATES.env.filters["reason_text"] = words.reason_text
TEMPLATES.env.filters["via_text"] = words.via_text
TEMPLATES.env.globals["zone_name"] = zone_name
TEMPLATES.env.filters["hl7time"] = _hl7_time
TEMPLATES.env.globals["segment_names"] = SEGMENT_NAMES
