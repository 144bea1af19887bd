"""Sensitive records in the console and the API: the banner, and "break the glass".

A document whose TXA-2 type or TXA-18 confidentiality puts it in a sensitive category
(:mod:`interface.rules.sensitivity`, ``rules/sensitivity.yaml``, or ``app.state.sensitivity_rules``)
shows a banner naming the category in words; its content is shown only to a user who gave a
reason. Giving one ("break the glass") writes an audit row ``action="break_glass"`` with the
reason, the patient's MRN and the categories; the ``sensitive_access`` alert rule
(:mod:`interface.ops.alerts`) reports those rows. A reason holds for that user and document for
:data:`GLASS_MINUTES` minutes (the content link of a PDF or image, a version switch), then
must be given again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import select

from interface.desk.users import User
from interface.rules import sensitivity
from interface.store.schema import audit
from interface.web import auth

GLASS_MINUTES = 30
ACTION = "break_glass"
MAX_REASON = 1000


def now(request: Request) -> datetime:
    """The app's clock (``app.state.clock``), else the time now."""
    return auth.clock(request)


def rules(request: Request) -> sensitivity.SensitivityRules:
    found = getattr(request.app.state, "sensitivity_rules", None)
    return found if found is not None else sensitivity.default_rules()


def categories(request: Request, entry: dict) -> frozenset[str]:
    """The sensitive categories of a document entry (``type``, ``confidentiality``)."""
    return sensitivity.classify(entry.get("type"), entry.get("confidentiality"), rules(request))


def banner(request: Request, cats: frozenset[str]) -> list[str]:
    """The categories in words, for the page's banner (empty: not sensitive)."""
    return sensitivity.labels(cats, rules(request)) if cats else []


def glass_broken(conn, user: User | str, number: str, now: datetime) -> bool:
    """Did this user give a reason to open this document within the last GLASS_MINUTES?"""
    name = user.name if isinstance(user, User) else user
    row = conn.execute(
        select(audit.c.id)
        .where(
            audit.c.user == name,
            audit.c.action == ACTION,
            audit.c.target_type == "document",
            audit.c.target_id == str(number)[:128],
            audit.c.at >= now - timedelta(minutes=GLASS_MINUTES),
        )
        .limit(1)
    ).first()
    return row is not None


def break_glass(
    conn, user: User | str, entry: dict, cats: frozenset[str], reason: str, now: datetime, via: str
) -> None:
    """Record the reason a user opens a sensitive document (in the caller's transaction)."""
    auth.record_audit(
        conn,
        user=user,
        action=ACTION,
        target_type="document",
        target_id=entry["document_number"],
        reason=reason[:MAX_REASON],
        detail={"categories": sorted(cats), "via": via},
        now=now,
        patient=entry.get("mrn"),
    )
