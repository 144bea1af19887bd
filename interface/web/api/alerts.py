"""``GET /api/alerts``: the alerts firing now and the last 100 alert events (analysts, admins).

Firing alerts come from the evaluator of the engine running in this process
(``app.state.runtime.alerts``). When the console runs on its own (``interface web``) or alerts
are off, they are worked out from the ``events`` table: an alert whose last event is ``alert``
(not ``alert_resolved``); ``evaluating: false`` then says they may be stale (an engine stopped
while an alert fired never resolved it).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from interface.store.schema import events
from interface.web.auth import ERROR_RESPONSES, UtcDateTime, require

router = APIRouter(tags=["alerts"])

KINDS = ("alert", "alert_resolved")
HISTORY = 5000  # alert events read back to tell what fires when no evaluator runs here


class FiringAlert(BaseModel):
    rule: str
    type: str
    channel: str | None
    destination: str | None
    since: str | None
    notified_at: str | None = None
    summary: str
    details: dict
    link: str | None


class AlertEvent(BaseModel):
    id: int
    at: UtcDateTime
    kind: str
    channel: str | None
    rule: str | None
    status: str | None
    summary: str | None
    detail: dict | None


class AlertList(BaseModel):
    evaluating: bool  # whether this process runs the alert checks (else firing is from the events)
    rules: list[str]
    firing: list[FiringAlert]
    events: list[AlertEvent]


def _parse(detail: str | None) -> dict | None:
    try:
        doc = json.loads(detail) if detail else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@router.get("/api/alerts", response_model=AlertList, responses=ERROR_RESPONSES)
def list_alerts(request: Request, _user=Depends(require("analyst"))) -> AlertList:
    """The alerts firing now, and the last 100 fired/resolved alert events, newest first."""
    evaluator = getattr(request.app.state.runtime, "alerts", None)
    with request.app.state.reader.connect() as conn:  # one read: the last 100, or enough history
        newest = conn.execute(
            select(events)
            .where(events.c.kind.in_(KINDS))
            .order_by(events.c.id.desc())
            .limit(100 if evaluator is not None else HISTORY)
        ).all()
    out = []
    for r in newest[:100]:
        doc = _parse(r.detail)
        out.append(
            AlertEvent(
                id=r.id,
                at=r.at,
                kind=r.kind,
                channel=r.channel,
                detail=doc,
                rule=(doc or {}).get("rule"),
                status=(doc or {}).get("status"),
                summary=(doc or {}).get("summary"),
            )
        )
    if evaluator is not None:
        return AlertList(
            evaluating=True,
            rules=[r.name for r in evaluator.cfg.rules],
            firing=[FiringAlert(**f) for f in evaluator.current()],
            events=out,
        )
    firing: dict[tuple, dict] = {}
    for kind, detail in ((r.kind, r.detail) for r in reversed(newest)):
        doc = _parse(detail)
        if not doc or "rule" not in doc:
            continue
        key = (doc["rule"], doc.get("channel"), doc.get("destination"))
        if kind == "alert":
            firing.setdefault(key, doc)["summary"] = doc.get("summary", "")
            firing[key]["details"] = doc.get("details") or {}
        else:
            firing.pop(key, None)
    return AlertList(
        evaluating=False,
        rules=sorted({k[0] for k in firing}),
        firing=[
            FiringAlert(
                rule=d["rule"],
                type=d.get("type", ""),
                channel=d.get("channel"),
                destination=d.get("destination"),
                since=d.get("since"),
                notified_at=d.get("at"),
                summary=d.get("summary", ""),
                details=d.get("details") or {},
                link=d.get("link"),
            )
            for d in firing.values()
        ],
        events=out,
    )
