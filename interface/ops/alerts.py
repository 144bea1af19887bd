"""Alerts: "tell me when something needs a human" (``alerts.yaml``, see docs/alerts.md).

Rules (each per channel; ``downstream_down`` per channel and destination):

* ``error_items``: work items that went to the error queue since the last check (optionally only
  some ``reasons``); fires with the count per reason and the item ids. It stays firing while any
  of the error items it reported is still in the error queue, and resolves once they are all
  retried, discarded or resubmitted. New errors while it fires are reported again once the
  cooldown has passed.
* ``queue_age``: the oldest pending or held item of a channel is older than ``minutes``.
* ``no_messages``: a channel received nothing for ``minutes`` (optionally counted only within
  ``hours``, in the channel's time zone; outside them it never starts firing).
* ``downstream_down``: a destination's unfinished items have failed with
  ``downstream_unavailable`` for ``minutes`` (since the first failed attempt of those items).
* ``deficiency_digest``: not a condition but a schedule — every ``every_hours`` each clinician's
  open chart deficiencies, counted per age bucket, to their own address and/or the rule's
  notifiers (:mod:`interface.ops.deficiency_digest`, docs/deficiencies.md).
* ``sensitive_access``: a sensitive record was opened with a reason ("break the glass", audit
  rows ``break_glass``) in the last ``minutes``; each opening is sent once (later ones after the
  cooldown, 0 by default), with the users and audit ids, never the patient or the category.
* ``roi_overdue``: release-of-information requests still open past their due date (rules/roi.yaml),
  counted with the oldest due date and the request ids (docs/release-of-information.md).

An alert fires once when its condition becomes true, again every ``cooldown_minutes`` while it
stays true (``error_items``: only if new errors came), and sends one "resolved" notice when it is
no longer true. Fired and resolved alerts are rows of the ``events`` table (kinds ``alert`` and
``alert_resolved``, detail = the JSON payload). What is firing is kept in memory only: after a
restart a condition that is still true fires once more.

The :class:`Evaluator` reads the database in one short read-only transaction per check (on
SQLite a connection of its own that begins with a plain deferred ``BEGIN`` and has
``query_only`` on, so it never takes or waits for the write lock), writes its events in a
separate short transaction, then notifies (:mod:`interface.ops.notify`). Time is injected
(``clock``); tests call :meth:`Evaluator.evaluate` directly.

Nothing in an alert comes from a message: channel and destination names, rule names, counts,
error reasons (the fixed codes), item ids, ages and times, and links to the console.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from interface.ops.alert_rules import (
    ERROR_SCAN_LIMIT,
    ERROR_SLACK,
    MAX_IDS,
    AlertConfig,
    DeficiencyDigestRule,
    DownstreamDownRule,
    ErrorItemsRule,
    NoMessagesRule,
    QueueAgeRule,
    RoiOverdueRule,
    Rule,
    SensitiveAccessRule,
    build_dispatcher,
    load_alerts,
    parse_hours,
)
from interface.ops.notify import Dispatcher
from interface.store.db import read_only_engine

log = logging.getLogger("interface.ops.alerts")


def _error_kind(exc: Exception) -> str:
    """``OperationalError (sqlite3.OperationalError)``: what failed, without the message text."""
    orig = getattr(exc, "orig", None)
    return (
        f"{type(exc).__name__} ({type(orig).__module__}.{type(orig).__name__})"
        if orig is not None
        else type(exc).__name__
    )


def _aware(ts):
    if ts is None:
        return None
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if ts else None


@dataclass
class Finding:
    """A rule's condition, true now, for one channel (and destination)."""

    channel: str
    destination: str | None
    summary: str
    details: dict
    link_path: str = "/"
    repeat: bool = True  # may fire again after the cooldown (error_items: only with new errors)
    episode_start: datetime | None = None  # error_items: errors updated after this still count


@dataclass
class Firing:
    rule: str
    type: str
    channel: str
    destination: str | None
    since: datetime
    notified_at: datetime
    summary: str
    details: dict
    link: str | None
    episode_start: datetime | None = None  # error_items: errors at or after this still count
    unreported: dict = field(default_factory=dict)  # error_items: new errors not notified yet
    unreported_ids: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "type": self.type,
            "channel": self.channel,
            "destination": self.destination,
            "since": _iso(self.since),
            "notified_at": _iso(self.notified_at),
            "summary": self.summary,
            "details": self.details,
            "link": self.link,
        }


class Evaluator:
    """Checks every rule each ``interval_seconds``; see the module docstring."""

    def __init__(
        self,
        db: Engine,
        cfg: AlertConfig,
        *,
        channels=None,
        clock: Callable[[], datetime],
        dispatcher: Dispatcher | None = None,
        console_url: str | None = None,
    ):
        self.db = db
        self.cfg = cfg
        self.channels = channels if channels is not None else []  # a live list (reload swaps its content)
        self.clock = clock
        self.dispatcher = dispatcher or Dispatcher()
        self._web_url = console_url
        self.console_url = (cfg.console_url or console_url or "").rstrip("/") or None
        self.firing: dict[tuple, Firing] = {}
        self.started_at = clock()
        self._last_check: dict[str, datetime] = {}  # error_items rule -> upper bound of the last check
        self._seen: dict[str, dict[int, datetime]] = {}  # error_items rule -> item id -> updated_at reported
        self._digest_sent: dict[str, datetime | None] = {}  # deficiency_digest rule -> last sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # a connection per check (every 30 s), on a snapshot: never takes or waits for the write lock
        self._reader, self._private = read_only_engine(db, pooled=False)

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()
        log.info("alerts: %d rule(s), checked every %ss", len(self.cfg.rules), self.cfg.interval_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._private:
            self._reader.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.interval_seconds):
            try:
                self.evaluate()
            except Exception as exc:  # the database away for a moment: next time
                # type names only, as everywhere: a database error's text can quote values
                log.error("alert check failed: %s", _error_kind(exc))

    def reconfigure(self, cfg: AlertConfig, dispatcher: Dispatcher) -> None:
        """A configuration reload (SIGHUP, ``interface reload``): the new rules, notifiers and
        interval from the next check on. An alert of a rule kept under the same name and type
        stays firing (no second notice, and its resolution is still sent); those of rules
        removed or changed in type are dropped without a notice — the rule that would resolve
        them is gone."""
        with self._lock:
            kept = {(r.name, r.type) for r in cfg.rules}
            self.firing = {k: f for k, f in self.firing.items() if (f.rule, f.type) in kept}
            names = {name for name, _ in kept}
            self._last_check = {k: v for k, v in self._last_check.items() if k in names}
            self._seen = {k: v for k, v in self._seen.items() if k in names}
            self.cfg = cfg
            self.dispatcher = dispatcher
            self.console_url = (cfg.console_url or self._web_url or "").rstrip("/") or None
        log.info("alerts reloaded: %d rule(s), checked every %ss", len(cfg.rules), cfg.interval_seconds)

    # -- one check ----------------------------------------------------------------------------

    def current(self) -> list[dict]:
        """The firing alerts (for ``GET /api/alerts``)."""
        with self._lock:
            return [f.as_dict() for _, f in sorted(self.firing.items(), key=lambda kv: kv[1].since)]

    def firing_counts(self) -> dict[str, int]:
        with self._lock:
            out = {r.name: 0 for r in self.cfg.rules}
            for f in self.firing.values():
                out[f.rule] = out.get(f.rule, 0) + 1
            return out

    def evaluate(self) -> list[dict]:
        """Check every rule once; record and send what fired or resolved. Returns the payloads."""
        cfg, dispatcher = self.cfg, self.dispatcher  # one configuration per check (reconfigure)
        dispatcher.retry()
        now = self.clock()
        findings: dict[str, tuple[dict, set]] = {}
        digests: dict[str, list[tuple[dict, list[str]]]] = {}
        with self._reader.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(postgresql_readonly=True)
            try:
                for rule in cfg.rules:
                    if isinstance(rule, DeficiencyDigestRule):
                        sent = self._digests(conn, rule, now)
                        if sent is not None:
                            digests[rule.name] = sent
                        continue
                    findings[rule.name] = getattr(self, f"_check_{rule.type}")(conn, rule, now)
            finally:
                conn.rollback()
        out: list[tuple[dict, list[str]]] = []
        with self._lock:
            if self.cfg is not cfg:  # reconfigured meanwhile: its rules are checked next time
                return []
            for rule in cfg.rules:
                if rule.name in findings:
                    found, keep = findings[rule.name]
                    out.extend((p, cfg.targets(rule)) for p in self._apply(rule, found, keep, now))
        if out:
            self._record([p for p, _ in out], now)
        if digests:
            self._record_digests(cfg, digests, now)
        for p, targets in out + [d for sent in digests.values() for d in sent]:
            dispatcher.deliver(p, targets)
        return [p for p, _ in out] + [p for sent in digests.values() for p, _ in sent]

    def _digests(self, conn, rule: DeficiencyDigestRule, now: datetime):
        """The rule's digests if they are due now (None if not), remembering when they went."""
        from interface.ops import deficiency_digest as dd

        if rule.name not in self._digest_sent:
            self._digest_sent[rule.name] = dd.last_sent(conn, rule.name)
        if not dd.due(rule, self._digest_sent[rule.name], now):
            return None
        self._digest_sent[rule.name] = now
        return dd.payloads(conn, rule, now, self.console_url)

    def _record_digests(self, cfg: AlertConfig, digests: dict, now: datetime) -> None:
        from interface.ops import deficiency_digest as dd
        from interface.store.journal import record_event

        rules = {r.name: r for r in cfg.rules}
        try:
            with self.db.begin() as conn:
                for name, sent in digests.items():
                    record_event(
                        conn, at=now, kind=dd.KIND, channel=name, detail=dd.event_detail(rules[name], sent)
                    )
        except Exception as exc:  # send anyway; the next digest may then come early after a restart
            log.error("deficiency digest event not recorded: %s", type(exc).__name__)

    def _apply(self, rule: Rule, found: dict, keep: set, now: datetime) -> list[dict]:
        payloads = []
        cooldown = timedelta(minutes=rule.cooldown_minutes)
        for subject, f in found.items():
            key = (rule.name, f.channel, f.destination)
            st = self.firing.get(key)
            if st is None:
                st = self.firing[key] = Firing(
                    rule.name,
                    rule.type,
                    f.channel,
                    f.destination,
                    since=now,
                    notified_at=now,
                    summary=f.summary,
                    details=f.details,
                    link=self._link(f.link_path),
                )
                st.episode_start = f.episode_start
                payloads.append(self._payload(st, "firing", now))
                continue
            st.summary, st.details = f.summary, f.details
            if f.repeat and now - st.notified_at >= cooldown:
                st.notified_at = now
                payloads.append(self._payload(st, "firing", now))
        for key in [k for k in self.firing if k[0] == rule.name]:
            if (key[1], key[2]) not in found and (key[1], key[2]) not in keep:
                st = self.firing.pop(key)
                payloads.append(self._payload(st, "resolved", now))
        return payloads

    def _link(self, path: str) -> str | None:
        return f"{self.console_url}{path}" if self.console_url else None

    def _payload(self, st: Firing, status: str, now: datetime) -> dict:
        summary = st.summary if status == "firing" else f"resolved: {st.summary}"
        return {
            "status": status,
            "rule": st.rule,
            "type": st.type,
            "channel": st.channel,
            "destination": st.destination,
            "at": _iso(now),
            "since": _iso(st.since),
            "summary": summary,
            "details": dict(st.details),
            "link": st.link,
        }

    def _record(self, payloads: list[dict], now: datetime) -> None:
        from interface.store.journal import record_event

        try:
            with self.db.begin() as conn:
                for p in payloads:
                    record_event(
                        conn,
                        at=now,
                        kind="alert" if p["status"] == "firing" else "alert_resolved",
                        channel=p["channel"],
                        detail=json.dumps(p, sort_keys=True),
                    )
        except Exception as exc:  # notify anyway: the alert matters more than its record
            log.error("alert events not recorded: %s", type(exc).__name__)

    def _channels(self, rule: Rule, names) -> list[str]:
        return [n for n in names if not rule.channels or n in rule.channels]

    # -- the rules ----------------------------------------------------------------------------
    # Each returns ({(channel, destination): Finding}, keep): keep lists subjects whose state is
    # unknown this time (neither newly true nor resolved).

    def _check_error_items(self, conn, rule: ErrorItemsRule, now: datetime):
        from interface.store.schema import work_items as wi

        last = self._last_check.get(rule.name, self.started_at)
        seen = self._seen.setdefault(rule.name, {})
        q = (
            select(wi.c.id, wi.c.channel, wi.c.reason, wi.c.updated_at)
            .where(wi.c.status == "error", wi.c.updated_at > last - ERROR_SLACK, wi.c.updated_at <= now)
            .order_by(wi.c.updated_at, wi.c.id)
            .limit(ERROR_SCAN_LIMIT)
        )
        if rule.channels:
            q = q.where(wi.c.channel.in_(rule.channels))
        if rule.reasons:
            q = q.where(wi.c.reason.in_(rule.reasons))
        new: dict[str, list] = {}
        for r in conn.execute(q):
            at = _aware(r.updated_at)
            if seen.get(r.id) == at:
                continue
            seen[r.id] = at
            new.setdefault(r.channel, []).append((r.id, r.reason or "unknown"))
        self._last_check[rule.name] = now
        for item_id in [i for i, at in seen.items() if at <= now - 2 * ERROR_SLACK]:
            del seen[item_id]
        found = {}
        cooldown = timedelta(minutes=rule.cooldown_minutes)
        for ch in sorted(set(new) | {k[1] for k in self.firing if k[0] == rule.name}):
            st = self.firing.get((rule.name, ch, None))
            fresh = new.get(ch, [])
            start = st.episode_start if st is not None else last - ERROR_SLACK
            cq = (
                select(wi.c.reason, func.count().label("n"))
                .where(wi.c.status == "error", wi.c.channel == ch, wi.c.updated_at > start)
                .group_by(wi.c.reason)
            )
            if rule.reasons:
                cq = cq.where(wi.c.reason.in_(rule.reasons))
            still = {(r.reason or "unknown"): r.n for r in conn.execute(cq)}
            if st is None:
                counts, ids, repeat = {}, [i for i, _ in fresh], False
                for _id, reason in fresh:
                    counts[reason] = counts.get(reason, 0) + 1
            else:  # new errors while firing wait for the cooldown, then are reported together
                for item_id, reason in fresh:
                    st.unreported[reason] = st.unreported.get(reason, 0) + 1
                    if len(st.unreported_ids) < MAX_IDS:
                        st.unreported_ids.append(item_id)
                if not still and not st.unreported:
                    continue  # every error it reported was worked: resolved
                repeat = bool(st.unreported) and now - st.notified_at >= cooldown
                if repeat:
                    counts, ids = st.unreported, st.unreported_ids
                    st.unreported, st.unreported_ids = {}, []
                else:
                    counts, ids = st.details["new_by_reason"], st.details["item_ids"]
            n_new = sum(counts.values())
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(counts.items()))
            details = {
                "new_errors": n_new,
                "new_by_reason": dict(counts),
                "item_ids": list(ids)[:MAX_IDS],
                "still_in_error_queue": sum(still.values()),
                "still_by_reason": still,
            }
            found[(ch, None)] = Finding(
                ch,
                None,
                f"{ch}: {n_new} new error item(s) ({reasons})",
                details,
                link_path=f"/errors?channel={ch}",
                repeat=repeat,
                episode_start=start,
            )
        return found, set()

    def _check_sensitive_access(self, conn, rule: SensitiveAccessRule, now: datetime):
        """Break-the-glass audit rows of the last ``minutes``; those not yet notified are sent
        when the alert starts or once its cooldown has passed."""
        from interface.store.schema import audit

        since = now - timedelta(minutes=rule.minutes)
        rows = conn.execute(
            select(audit.c.id, audit.c.user, audit.c.at)
            .where(audit.c.action == "break_glass", audit.c.at > since, audit.c.at <= now)
            .order_by(audit.c.at, audit.c.id)
            .limit(ERROR_SCAN_LIMIT)
        ).all()
        notified = self._seen.setdefault(rule.name, {})
        for audit_id in [i for i, at in notified.items() if at <= since]:
            del notified[audit_id]
        if not rows:
            return {}, set()
        st = self.firing.get((rule.name, "console", None))
        due = st is None or now - st.notified_at >= timedelta(minutes=rule.cooldown_minutes)
        fresh = [r for r in rows if r.id not in notified]
        if due:
            for r in fresh:
                notified[r.id] = _aware(r.at)
        shown = fresh if due and fresh else rows
        users = sorted({r.user for r in shown})
        details = {
            "openings": len(shown),
            "in_last_minutes": {"minutes": rule.minutes, "openings": len(rows)},
            "users": users,
            "audit_ids": [r.id for r in shown][:MAX_IDS],
        }
        summary = (
            f"{len(shown)} sensitive record opening(s) with a reason (break the glass) by {', '.join(users)}"
        )
        finding = Finding(
            "console",
            None,
            summary,
            details,
            link_path="/audit?action=break_glass",
            repeat=due and bool(fresh),
        )
        return {("console", None): finding}, set()

    def _check_queue_age(self, conn, rule: QueueAgeRule, now: datetime):
        from interface.store.schema import work_items as wi

        q = (
            select(
                wi.c.channel, wi.c.status, func.count().label("n"), func.min(wi.c.created_at).label("oldest")
            )
            .where(wi.c.status.in_(("pending", "held")))
            .group_by(wi.c.channel, wi.c.status)
        )
        if rule.channels:
            q = q.where(wi.c.channel.in_(rule.channels))
        per: dict[str, dict] = {}
        for r in conn.execute(q):
            s = per.setdefault(r.channel, {"pending": 0, "held": 0, "oldest": None})
            s[r.status] = r.n
            oldest = _aware(r.oldest)
            if oldest is not None and (s["oldest"] is None or oldest < s["oldest"]):
                s["oldest"] = oldest
        found = {}
        limit = timedelta(minutes=rule.minutes)
        for ch, s in sorted(per.items()):
            if s["oldest"] is None or now - s["oldest"] < limit:
                continue
            age = (now - s["oldest"]).total_seconds()
            details = {
                "oldest_age_minutes": round(age / 60, 1),
                "limit_minutes": rule.minutes,
                "pending": s["pending"],
                "held": s["held"],
                "oldest_created_at": _iso(s["oldest"]),
            }
            found[(ch, None)] = Finding(
                ch,
                None,
                f"{ch}: oldest queued item waiting {age / 60:.0f} min "
                f"(limit {rule.minutes:g}; {s['pending']} pending, {s['held']} held)",
                details,
                link_path="/",
            )
        return found, set()

    def _check_no_messages(self, conn, rule: NoMessagesRule, now: datetime):
        from interface.store.schema import messages as m

        found, keep = {}, set()
        window = parse_hours(rule.hours) if rule.hours else None
        for ch in self._channels(rule, [c.name for c in self.channels if getattr(c, "enabled", True)]):
            last = conn.execute(
                select(m.c.received_at).where(m.c.channel == ch).order_by(m.c.id.desc()).limit(1)
            ).scalar()
            last = _aware(last)
            quiet_from = max(last, self.started_at) if last is not None else self.started_at
            limit = timedelta(minutes=rule.minutes)
            st = self.firing.get((rule.name, ch, None))
            if st is not None and (last is None or last < st.since):
                keep.add((ch, None))  # firing: only a message resolves it (not the end of the hours)
            if window is not None:
                tz = ZoneInfo(next((c.timezone for c in self.channels if c.name == ch), "UTC"))
                opened = _window_start(now.astimezone(tz), *window)
                if opened is None:  # outside the hours: silence does not count
                    continue
                quiet_from = max(quiet_from, opened)
            if now - quiet_from < limit:
                continue
            quiet = (now - quiet_from).total_seconds() / 60
            details = {
                "quiet_minutes": round(quiet, 1),
                "limit_minutes": rule.minutes,
                "last_received_at": _iso(last),
                "hours": rule.hours,
            }
            found[(ch, None)] = Finding(
                ch,
                None,
                f"{ch}: no message received for {quiet:.0f} min (limit {rule.minutes:g})",
                details,
                link_path="/",
            )
        return found, keep

    def _check_downstream_down(self, conn, rule: DownstreamDownRule, now: datetime):
        from interface.store.schema import work_attempts as wa
        from interface.store.schema import work_items as wi

        q = (
            select(
                wi.c.channel,
                wi.c.destination,
                func.count(func.distinct(wi.c.id)).label("n"),
                func.min(wi.c.id).label("first_id"),
                func.min(wa.c.at).label("since"),
            )
            .select_from(wi.join(wa, and_(wa.c.item_id == wi.c.id, wa.c.outcome.in_(("retry", "error")))))
            .where(wi.c.status.in_(("pending", "error")), wi.c.reason == "downstream_unavailable")
            .group_by(wi.c.channel, wi.c.destination)
        )
        if rule.channels:
            q = q.where(wi.c.channel.in_(rule.channels))
        if rule.destinations:
            q = q.where(wi.c.destination.in_(rule.destinations))
        found = {}
        for r in conn.execute(q):
            since = _aware(r.since)
            if since is None or now - since < timedelta(minutes=rule.minutes):
                continue
            mins = (now - since).total_seconds() / 60
            details = {
                "failing_items": r.n,
                "first_item_id": r.first_id,
                "failing_since": _iso(since),
                "failing_minutes": round(mins, 1),
                "limit_minutes": rule.minutes,
                "reason": "downstream_unavailable",
            }
            found[(r.channel, r.destination)] = Finding(
                r.channel,
                r.destination,
                f"{r.channel} -> {r.destination}: downstream unavailable for {mins:.0f} min ({r.n} item(s) waiting)",
                details,
                link_path=f"/errors?channel={r.channel}&status=pending,error",
            )
        return found, set()

    def _check_roi_overdue(self, conn, rule: RoiOverdueRule, now: datetime):
        """Open release-of-information requests due before today (minus ``days_overdue``)."""
        from interface.rules.roi import OPEN
        from interface.store import roi as roi_store

        today = now.astimezone(timezone.utc).date()
        rows = roi_store.overdue(conn, today - timedelta(days=rule.days_overdue), OPEN)
        if not rows:
            return {}, set()
        oldest = rows[0]["due_on"]
        details = {
            "overdue": len(rows),
            "oldest_due_on": oldest.isoformat(),
            "oldest_days_overdue": (today - oldest).days,
            "request_ids": [r["id"] for r in rows][:MAX_IDS],
        }
        summary = f"{len(rows)} release-of-information request(s) overdue (oldest due {oldest.isoformat()})"
        return {("roi", None): Finding("roi", None, summary, details, link_path="/roi")}, set()


def _window_start(local: datetime, start: dtime, end: dtime) -> datetime | None:
    """When the current ``hours`` window opened (aware), or None outside it."""
    t = local.timetz().replace(tzinfo=None)
    day = local.date()
    if start < end:
        if not start <= t < end:
            return None
    elif t >= start:  # a window over midnight (22:00-06:00), evening part
        pass
    elif t < end:
        day = day - timedelta(days=1)
    else:
        return None
    return datetime.combine(day, start, tzinfo=local.tzinfo)


def make_evaluator(
    db: Engine, path: Path, *, channels, clock, console_url: str | None = None, environ=None
) -> Evaluator:
    """``interface run``: load ``alerts.yaml`` (checked against the channels) and build the evaluator."""
    cfg = load_alerts(path, {c.name for c in channels})
    return Evaluator(
        db,
        cfg,
        channels=channels,
        clock=clock,
        dispatcher=build_dispatcher(cfg, environ),
        console_url=console_url,
    )
