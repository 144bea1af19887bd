"""The ``deficiency_digest`` alert rule: each clinician's open chart deficiencies, counted.

Every ``every_hours`` (since the last digest of the rule, an ``events`` row of kind
``deficiency_digest`` so a restart does not resend early) the alerts evaluator sends one payload
per clinician with open deficiencies: their id and name, the open count per age bucket, how many
are delinquent, and a link to the console worklist filtered to them. Nothing about a patient:
no names, MRNs, document numbers or document text — the clinician follows the link and signs in.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from interface.ops.alert_rules import DeficiencyDigestRule, digest_notifier_name

KIND = "deficiency_digest"


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def last_sent(conn: Connection, rule: str) -> datetime | None:
    """When this rule last sent its digests (the newest ``deficiency_digest`` event)."""
    from interface.store.schema import events

    at = conn.execute(
        select(func.max(events.c.at)).where(events.c.kind == KIND, events.c.channel == rule)
    ).scalar()
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=timezone.utc))


def due(rule: DeficiencyDigestRule, last: datetime | None, now: datetime) -> bool:
    return last is None or now - last >= timedelta(hours=rule.every_hours)


def payloads(
    conn: Connection,
    rule: DeficiencyDigestRule,
    now: datetime,
    console_url: str | None,
) -> list[tuple[dict, list[str]]]:
    """``[(payload, notifier names)]``: one per clinician with open findings (and one for the
    unassigned findings with ``include_unassigned``, to the rule's notifiers only)."""
    from interface.store.deficiencies import UNASSIGNED, summarize

    shared = list(rule.notify) if rule.notify is not None else []
    out = []
    for g in summarize(conn, "clinician", now, bylaws_days=rule.bylaws_days):
        if g["open"] == 0 or (g["key"] == UNASSIGNED and not rule.include_unassigned):
            continue
        targets = list(shared)
        if g["key"] in rule.clinicians:
            targets.append(digest_notifier_name(rule.name, g["key"]))
        if not targets:
            continue
        link = f"{console_url}/deficiencies?clinician={quote(g['key'], safe='')}" if console_url else None
        buckets = ", ".join(f"{b} days: {n}" for b, n in g["buckets"].items() if n)
        details = {
            "clinician_id": None if g["key"] == UNASSIGNED else g["key"],
            "clinician_name": g["name"],
            "open": g["open"],
            "by_bucket": dict(g["buckets"]),
            "delinquent": g["delinquent"],
            "bylaws_days": rule.bylaws_days,
        }
        payload = {
            "status": "digest",
            "rule": rule.name,
            "type": rule.type,
            "channel": None,
            "destination": None,
            "at": _iso(now),
            "since": None,
            "summary": f"chart completion: {g['open']} open deficiencies, {g['delinquent']} delinquent "
            f"({buckets})",
            "details": details,
            "link": link,
        }
        out.append((payload, targets))
    return out


def event_detail(rule: DeficiencyDigestRule, sent: list[tuple[dict, list[str]]]) -> str:
    """The ``events`` row of one round of digests: how many, to how many notifiers (no names)."""
    return json.dumps(
        {"rule": rule.name, "digests": len(sent), "notifications": sum(len(t) for _, t in sent)},
        sort_keys=True,
    )
