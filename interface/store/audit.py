"""The audit trail's one writer, its hash chain, its check and the patient-centric report.

Every layer writes audit entries through :func:`record` (or :func:`record_many` for the patients a
search listed): ``web.auth.record_audit``/``audit_now``, the desk's user and error-queue actions,
the store's waivers, the CLI's reads. An entry says who (``user``; the OS user for the CLI), what
(``action`` on ``target_type``/``target_id``), about which patient (``patient``: the MRN as it was
when written), how (``via``: console, api, fhir, cli; None for the engine itself), why
(``reason``) and when (``at``, UTC).

**Tamper evidence.** Each entry carries ``seq`` (1, 2, 3...) and ``entry_hash`` = SHA-256 of the
previous entry's hash and this row's canonical serialisation (:func:`canonical`); the head row
(``audit_chain``) holds the newest ``seq`` and hash. Appending updates the head first, so on
PostgreSQL concurrent writers (any process) queue on its row lock until the writer commits; on
SQLite ``BEGIN IMMEDIATE`` serialises writers already. :func:`verify` walks the chain and names
the first entry that does not match (changed, removed, inserted around the writer, or a tail cut
off). The chain starts at migration 0011: rows written before have no hash and are counted, not
checked.

**Merges.** :func:`patient_mrns` is the MRN asked for, the chart it now lives under and every MRN
merged into that chart, so a report for the surviving MRN includes entries written under MRNs
merged into it.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import getpass
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Integer, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from interface.rules import words
from interface.store import document_ids, fastsql, sanitize
from interface.store.audit_schema import audit_chain
from interface.store.chart import _merged_from, resolve_mrn
from interface.store.schema import audit, messages, work_items

GENESIS = "0" * 64  # the "previous hash" of the first chained entry
VIAS = ("console", "api", "fhir", "cli", "download")  # download: a recipient's link (no sign-in)
FIELDS = ("user", "action", "target_type", "target_id", "patient", "via", "reason", "detail")
_LIMITS = {"user": 128, "action": 64, "target_type": 32, "target_id": 128, "patient": 128, "via": 16}

_via: contextvars.ContextVar[str | None] = contextvars.ContextVar("interface_audit_via", default=None)


@contextlib.contextmanager
def via(channel: str | None) -> Iterator[None]:
    """Entries written inside this block (same thread or task) without an explicit ``via`` are
    marked ``channel``: the web app sets it per request, the CLI for its run."""
    token = _via.set(channel)
    try:
        yield
    finally:
        _via.reset(token)


def current_via() -> str | None:
    return _via.get()


def _utc(at: datetime) -> datetime:
    """UTC, aware (SQLite hands back naive datetimes: they are UTC)."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _text(name: str, value: Any) -> str | None:
    """The value as it will be stored (the store's text rules, cut to the column's size)."""
    if value is None:
        return None
    if name == "detail" and isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, default=str)
    value = sanitize.clean(str(value))
    limit = _LIMITS.get(name)
    return value[:limit] if limit else value


def canonical(seq: int, at: datetime, row: Mapping[str, Any]) -> str:
    """The serialisation an entry's hash covers: its place, time and every field, as JSON."""
    doc = {"seq": seq, "at": _utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    doc.update({k: row.get(k) for k in FIELDS})
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev: str, seq: int, at: datetime, row: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev + "\n" + canonical(seq, at, row)).encode("utf-8")).hexdigest()


def record(
    conn: Connection,
    *,
    user: str,
    action: str,
    now: datetime,
    target_type: str | None = None,
    target_id: str | int | None = None,
    reason: str | None = None,
    detail: str | dict | None = None,
    patient: str | None = None,
    via: str | None = None,
) -> None:
    """Append one entry, in the caller's transaction (write it last: on PostgreSQL the chain's
    head stays locked until that transaction ends)."""
    record_many(
        conn,
        [
            {
                "user": user,
                "action": action,
                "target_type": target_type,
                "target_id": target_id,
                "reason": reason,
                "detail": detail,
                "patient": patient,
                "via": via,
            }
        ],
        now=now,
    )


def record_many(conn: Connection, entries: Iterable[Mapping[str, Any]], *, now: datetime) -> None:
    """Append several entries (keys of :data:`FIELDS`) at ``now``, chained in the order given,
    with one lock of the head and one insert."""
    rows = [{k: _text(k, e.get(k)) for k in FIELDS} for e in entries]
    if not rows:
        return
    default_via = _text("via", _via.get())
    for r in rows:
        if r["via"] is None:
            r["via"] = default_via
    at = _utc(now)
    seq, prev = _lock_head(conn, len(rows))
    values = []
    for r in rows:
        seq += 1
        prev = entry_hash(prev, seq, at, r)
        values.append({**r, "at": at, "seq": seq, "entry_hash": prev})
    fastsql.run_many(conn, _INSERT, values)
    fastsql.run(conn, _SET_HEAD, {"last_hash": prev})


def record_listed(
    conn: Connection,
    mrns: Iterable[str | None],
    *,
    user: str,
    now: datetime,
    action: str = "search",
    target_type: str = "patient",
    detail: str | dict | None = None,
    via: str | None = None,
) -> None:
    """What a search or list showed, as the access report needs it: one entry per patient listed
    (each MRN once, in the order shown), or one entry without a patient when none was."""
    base = {"user": user, "action": action, "target_type": target_type, "detail": detail, "via": via}
    seen = list(dict.fromkeys(m for m in mrns if m))
    record_many(conn, [{**base, "patient": m} for m in seen] or [base], now=now)


def os_user() -> str:
    """Who runs a command-line read or change: the operating system's user name."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry (some containers)
        return "unknown-os-user"


# the writer's three statements, compiled once (``fastsql``: every read the console, the API and
# FHIR answer writes its entries; through ``Connection.execute`` these cost more than the rest)
_BUMP = fastsql.Statement(
    update(audit_chain)
    .where(audit_chain.c.id == 1)
    .values(seq=audit_chain.c.seq + bindparam("count", type_=Integer))
    .returning(audit_chain.c.seq, audit_chain.c.last_hash)
)
_INSERT = fastsql.Statement(insert(audit), keyed=True)
_SET_HEAD = fastsql.Statement(
    update(audit_chain).where(audit_chain.c.id == 1).values(last_hash=bindparam("last_hash"))
)


def _lock_head(conn: Connection, count: int) -> tuple[int, str]:
    """Take the head row (the chain's lock) and reserve ``count`` places: (seq before, hash)."""
    got = fastsql.run(conn, _BUMP, {"count": count}).first()
    if got is None:  # a database built by create_all, not by the migration: start the chain now
        _start_chain(conn)
        got = fastsql.run(conn, _BUMP, {"count": count}).one()
    return got.seq - count, got.last_hash


def _start_chain(conn: Connection) -> None:
    start = conn.execute(select(func.coalesce(func.max(audit.c.id), 0) + 1)).scalar_one()
    values = {"id": 1, "seq": 0, "last_hash": GENESIS, "start_id": start}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(audit_chain).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(audit_chain).values(**values).on_conflict_do_nothing())


# -- verify ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: ``ok``; ``checked`` chained entries; ``before_chain`` rows from
    before the chain began; the first broken entry's ``broken_id``/``broken_seq`` and ``problem``;
    the head's ``seq`` and ``head_hash`` (write these down elsewhere to detect a rewritten tail)."""

    ok: bool
    checked: int
    before_chain: int
    seq: int
    head_hash: str
    broken_id: int | None = None
    broken_seq: int | None = None
    problem: str | None = None


def verify(conn: Connection, *, batch: int = 2000) -> Verdict:
    """Walk the chain from its first entry and recompute every hash."""
    head = conn.execute(select(audit_chain).where(audit_chain.c.id == 1)).first()
    if head is None:
        before = conn.execute(select(func.count()).select_from(audit)).scalar_one()
        if before and conn.execute(select(audit.c.id).where(audit.c.seq.is_not(None)).limit(1)).first():
            return Verdict(False, 0, before, 0, GENESIS, problem="the chain's head row is missing")
        return Verdict(True, 0, before, 0, GENESIS)
    before = conn.execute(
        select(func.count()).select_from(audit).where(audit.c.id < head.start_id)
    ).scalar_one()
    stray = conn.execute(
        select(audit.c.id)
        .where(audit.c.id >= head.start_id, audit.c.seq.is_(None))
        .order_by(audit.c.id)
        .limit(1)
    ).first()
    prev, expected, checked, last = GENESIS, 1, 0, None
    cols = [audit.c.id, audit.c.seq, audit.c.at, audit.c.entry_hash, *(audit.c[k] for k in FIELDS)]
    after = 0
    while True:
        rows = conn.execute(select(*cols).where(audit.c.seq > after).order_by(audit.c.seq).limit(batch)).all()
        for r in rows:
            m = r._mapping
            bad = None
            if r.seq != expected:
                bad = f"entry {expected} is missing (the next is {r.seq})"
            elif r.id < head.start_id:
                bad = "a chained entry older than the chain"
            elif entry_hash(prev, r.seq, r.at, m) != r.entry_hash:
                bad = "its content or hash does not match the chain"
            if bad is not None:
                return Verdict(False, checked, before, head.seq, head.last_hash, r.id, r.seq, bad)
            prev, expected, checked, last = r.entry_hash, expected + 1, checked + 1, r
        if len(rows) < batch:
            break
        after = rows[-1].seq
    if stray is not None:
        return Verdict(
            False, checked, before, head.seq, head.last_hash, stray.id, None, "an entry outside the chain"
        )
    if head.seq != checked or head.last_hash != prev:
        return Verdict(
            False,
            checked,
            before,
            head.seq,
            head.last_hash,
            None if last is None else last.id,
            checked,
            f"the chain ends at entry {checked} but its head says {head.seq}: entries were removed",
        )
    return Verdict(True, checked, before, head.seq, head.last_hash)


# -- anchors: the head written down outside the database -------------------------------------------


def anchor(conn: Connection, now: datetime) -> dict:
    """The chain's head as an auditor keeps it outside the database: ``{seq, hash, at}`` (``at``
    ISO 8601 UTC). A later :func:`check_anchors` proves the chain still holds that entry unchanged."""
    head = conn.execute(select(audit_chain).where(audit_chain.c.id == 1)).first()
    seq, last = (head.seq, head.last_hash) if head is not None else (0, GENESIS)
    return {"seq": int(seq), "hash": last, "at": _utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")}


def check_anchors(conn: Connection, anchors: Iterable[Mapping[str, Any]]) -> list[str]:
    """What no longer matches the recorded anchors, one sentence each naming the entry: an entry
    an anchor saw that is gone (the chain cut back), or whose hash differs (the chain rewritten,
    even if rewritten consistently so that :func:`verify` passes). Empty: every anchor holds."""
    head = conn.execute(select(audit_chain).where(audit_chain.c.id == 1)).first()
    head_seq = head.seq if head is not None else 0
    out = []
    for a in anchors:
        seq, want, at = int(a["seq"]), str(a["hash"]), a.get("at") or "?"
        if seq == 0:
            continue
        row = conn.execute(select(audit.c.id, audit.c.entry_hash).where(audit.c.seq == seq)).first()
        if row is None or seq > head_seq:
            out.append(
                f"entry {seq} (anchored {at}) is missing: the chain now ends at entry {head_seq}, "
                "it was cut back"
            )
        elif row.entry_hash != want:
            out.append(
                f"entry {seq} (audit id {row.id}, anchored {at}) does not match the hash recorded then: "
                "the chain was rewritten"
            )
    return out


# -- the report -----------------------------------------------------------------------------------


def patient_mrns(conn: Connection, mrn: str) -> list[str]:
    """The MRNs whose entries belong to this patient's report: ``mrn``, the chart it now lives
    under (after merges and MRN changes) and every MRN merged into that chart."""
    survivor = resolve_mrn(conn, mrn) or mrn
    out = [mrn] if survivor == mrn else [survivor, mrn]
    for m in _merged_from(conn, survivor):
        if m not in out:
            out.append(m)
    return out


def message_patient(conn: Connection, message_id: int | None) -> str | None:
    """The MRN a message is for (its ordering key's identifier), or None."""
    if message_id is None:
        return None
    return conn.execute(select(messages.c.patient_id).where(messages.c.id == message_id)).scalar()


def item_patients(conn: Connection, item_ids: Iterable[int]) -> list[str]:
    """The MRNs of the messages of these work items, in the items' order (each once)."""
    ids = list(item_ids)
    if not ids:
        return []
    q = (
        select(work_items.c.id, messages.c.patient_id)
        .select_from(work_items.join(messages, messages.c.id == work_items.c.message_id))
        .where(work_items.c.id.in_(ids))
    )
    by_id = {r.id: r.patient_id for r in conn.execute(q)}
    return list(dict.fromkeys(by_id[i] for i in ids if by_id.get(i)))


def document_patient(conn: Connection, number: str, namespace: str | None = None) -> str | None:
    """The MRN a document is filed under (None: unknown, or ambiguous without ``namespace``)."""
    try:
        row = document_ids.match(conn, number, namespace)
    except document_ids.AmbiguousDocument:
        return None
    return row["mrn"] if row else None


COLUMNS = ("id", "at", "user", "via", "action", "target_type", "target_id", "patient", "reason", "detail")


def report(
    conn: Connection,
    *,
    mrns: list[str] | None = None,
    user: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    via: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int | None = 100,
) -> list[dict]:
    """Entries, newest first (oldest first with ``after_id``): about any of ``mrns``, by ``user``,
    at or after ``since`` and before ``until`` (UTC)."""
    q = select(*(audit.c[c] for c in COLUMNS))
    if mrns is not None:
        q = q.where(audit.c.patient.in_(mrns))
    for col, value in (
        ("user", user),
        ("action", action),
        ("target_type", target_type),
        ("target_id", target_id),
        ("via", via),
    ):
        if value:
            q = q.where(audit.c[col] == value)
    if since is not None:
        q = q.where(audit.c.at >= _utc(since))
    if until is not None:
        q = q.where(audit.c.at < _utc(until))
    if before_id is not None:
        q = q.where(audit.c.id < before_id)
    if after_id is not None:
        q = q.where(audit.c.id > after_id).order_by(audit.c.id)
    else:
        q = q.order_by(audit.c.id.desc())
    if limit is not None:
        q = q.limit(limit)
    out = []
    for r in conn.execute(q):
        d = dict(r._mapping)
        d["at"] = _utc(d["at"])
        out.append(d)
    return out


def page(
    conn: Connection,
    *,
    mrns: list[str] | None = None,
    user: str | None = None,
    entry_id: int | None = None,
    at: Iterable[tuple[str, datetime]] = (),
    count: int = 20,
    offset: int = 0,
) -> tuple[int, list[dict]]:
    """(total matches, one page of entries newest first) for offset-paged searches (FHIR
    AuditEvent): about any of ``mrns``, by ``user``, the entry ``entry_id``; ``at``: comparisons
    ``(op, UTC datetime)`` with op one of ge, gt, le, lt."""
    where = []
    if mrns is not None:
        where.append(audit.c.patient.in_(mrns))
    if user:
        where.append(audit.c.user == user)
    if entry_id is not None:
        where.append(audit.c.id == entry_id)
    ops = {"ge": "__ge__", "gt": "__gt__", "le": "__le__", "lt": "__lt__"}
    for op, value in at:
        where.append(getattr(audit.c.at, ops[op])(_utc(value)))
    total = conn.execute(select(func.count()).select_from(audit).where(*where)).scalar_one()
    rows: list[dict] = []
    if count:
        cols = [*(audit.c[c] for c in COLUMNS), audit.c.seq, audit.c.entry_hash]
        q = select(*cols).where(*where).order_by(audit.c.id.desc()).limit(count).offset(offset)
        for r in conn.execute(q):
            d = dict(r._mapping)
            d["at"] = _utc(d["at"])
            rows.append(d)
    return total, rows


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# CSV columns after COLUMNS: the codes of via, action and target_type in words (interface.rules.words)
WORD_COLUMNS = ("via_words", "action_words", "target_type_words")


def row_words(r: Mapping[str, Any]) -> tuple[str, str, str]:
    """An entry's channel, action and target type in words (an unknown code: the code)."""
    return (
        words.via_text(r.get("via")),
        words.word("audit_action", r.get("action")),
        words.word("audit_target", r.get("target_type")),
    )


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The entries as CSV (a header line, then one line per entry; times in ISO 8601 UTC; the
    codes as stored, then :data:`WORD_COLUMNS`, the same codes in words; a cell starting ``=``,
    ``+``, ``-`` or ``@`` is prefixed with ``'`` so no spreadsheet runs it)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COLUMNS + WORD_COLUMNS)
    for r in rows:
        coded = [_utc(r["at"]).isoformat() if c == "at" else _cell(r.get(c)) for c in COLUMNS]
        w.writerow(coded + [_cell(t) for t in row_words(r)])
    return buf.getvalue()
