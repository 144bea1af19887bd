"""Searching the journal: the queries behind the console's message list and ``GET /api/messages``.

Every filter runs on an index (``interface.store.schema``, ``interface.store.message_search_schema``):

* ``control_id``: case-insensitive **prefix** (``smp00`` finds ``SMP0008``) on ``lower(control_id)``;
* ``mrn``: the patient's whole chart — the MRN is followed through merges to the surviving one,
  and the messages sent under every MRN merged into it are found too (:func:`chart_mrns`);
* ``type`` (``ADT`` every trigger, ``ADT^A01`` one), ``trigger`` (``A08`` of any type), ``status``,
  ``channel``, ``sending_application`` and ``sending_facility`` (exact), ``since``/``until``
  (``received_at``);
* ``text``: words in the message's content, on the full-text index (FTS5 / tsvector): every word
  must occur (``AND``), a word ending in ``*`` is a prefix, ``WARD^101`` is the phrase ``WARD 101``.

A date range that ends before the newest messages is sorted on PostgreSQL when it is small
enough (:func:`_sort_range`). Results come newest first, one page at a time by keyset (``before``: older than that id,
``after``: newer), without a total count. A content search with no other selective filter walks
the full-text index newest first in batches and stops after :data:`MAX_SCANNED` candidates: a page
may then be ``partial`` (its ``older`` cursor goes on from where the walk stopped).

Pure queries: no masking here (``interface.desk.search_snippets`` shows the hits), no audit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from interface.store.chart_schema import patients
from interface.store.schema import messages

MAX_TERMS = 8
MAX_CHART_MRNS = 200
BATCH = 500  # full-text candidates read per step of a content search
MAX_SCANNED = 20_000  # candidates a content search reads before it returns a partial page
SORTED_RANGE = 200_000  # estimated rows of a date-range search below which PostgreSQL sorts them
FILTERS_DRIVE = 20_000  # estimated rows of a content search's other filters below which they drive it
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Term:
    """One search term: a word or a phrase of words (``WARD^101``), a prefix when it ended in ``*``."""

    words: tuple[str, ...]
    prefix: bool = False


def text_terms(query: str | None) -> list[Term]:
    """The terms of a content search, split the way the full-text tokenizers split message text
    (on anything but letters and digits); at most :data:`MAX_TERMS`."""
    out: list[Term] = []
    for chunk in (query or "").split():
        words = tuple(w.lower() for w in _WORD.findall(chunk))
        if words:
            out.append(Term(words, chunk.endswith("*")))
        if len(out) == MAX_TERMS:
            break
    return out


@dataclass
class Filters:
    mrn: str | None = None
    control_id: str | None = None
    type: str | None = None
    trigger: str | None = None
    status: str | None = None
    channel: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None


@dataclass
class Page:
    rows: list
    older: int | None  # ``before=`` of the next (older) page
    newer: int | None  # ``after=`` of the previous (newer) page
    mrns: list[str] = field(default_factory=list)  # the MRNs searched (the chart's), survivor first
    terms: list[Term] = field(default_factory=list)
    partial: bool = False  # a content search stopped after MAX_SCANNED candidates


def chart_mrns(conn: Connection, mrn: str) -> list[str]:
    """The MRNs of ``mrn``'s chart: the MRN it now lives under (following merges and renames)
    first, then every MRN merged into that one, directly or through others."""
    survivor, seen = mrn, {mrn}
    while True:
        nxt = conn.execute(select(patients.c.merged_into).where(patients.c.mrn == survivor)).scalar()
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        survivor = nxt
    family, frontier = [survivor], [survivor]
    got = {survivor}
    while frontier and len(family) < MAX_CHART_MRNS:
        rows = conn.scalars(select(patients.c.mrn).where(patients.c.merged_into.in_(frontier))).all()
        frontier = [r for r in rows if r not in got][: MAX_CHART_MRNS - len(family)]
        got.update(frontier)
        family += frontier
    return family


def _ascii_lower(value: str) -> str:
    """What SQL ``lower()`` does on both databases for ASCII (control ids are ASCII)."""
    return "".join(c.lower() if c.isascii() else c for c in value)


def _control_id(conn: Connection, value: str):
    prefix = _ascii_lower(value.strip())
    col = messages.c.control_id
    if conn.dialect.name == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return func.lower(col).like(escaped + "%", escape="\\")
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return (func.lower(col) >= prefix) & (func.lower(col) < upper)


def _type(value: str | None, trigger: str | None):
    t = (value or "").strip().upper().replace("_", "^")
    trig = (trigger or "").strip().upper()
    col = messages.c.message_type
    if "^" in t:
        code, _, trig_in = t.partition("^")
        t, trig = code, trig or trig_in
    if t and trig:
        return col == f"{t}^{trig}"
    if t:  # every trigger of the type: an index range, not a LIKE
        return (col == t) | ((col >= t + "^") & (col < t + "_"))
    clean = trig.replace("%", "").replace("_", "")
    return col.like("%^" + clean)


def conditions(conn: Connection, f: Filters) -> tuple[list, list[str]]:
    """The WHERE conditions of ``f`` but its text, and the MRNs searched (the chart's)."""
    conds = []
    mrns: list[str] = []
    if f.mrn:
        mrns = chart_mrns(conn, f.mrn.strip())
        conds.append(messages.c.patient_id.in_(mrns) if len(mrns) > 1 else messages.c.patient_id == mrns[0])
    if f.control_id and f.control_id.strip():
        conds.append(_control_id(conn, f.control_id))
    if (f.type and f.type.strip()) or (f.trigger and f.trigger.strip()):
        conds.append(_type(f.type, f.trigger))
    for name in ("status", "channel", "sending_application", "sending_facility"):
        value = getattr(f, name)
        if value:
            conds.append(messages.c[name] == value.strip())
    if f.since is not None:
        conds.append(messages.c.received_at >= f.since)
    if f.until is not None:
        conds.append(messages.c.received_at < f.until)
    return conds, mrns


# -- the full-text index --------------------------------------------------------------------------


def _match(conn: Connection, terms: list[Term]) -> tuple[str, dict]:
    """(SQL of a condition on the full-text table aliased ``f``, its bind values)."""
    binds: dict = {}
    if conn.dialect.name == "postgresql":
        parts = []
        for i, t in enumerate(terms):
            name = f"fts_t{i}"
            if t.prefix and len(t.words) == 1 and t.words[0].isascii():
                binds[name] = f"'{t.words[0]}':*"
                parts.append(f"to_tsquery('simple', :{name})")
            else:  # spelled as message_fts_text spells the indexed text, here so the planner
                # sees a constant query (convert_to is only STABLE: it would hide the word's rarity)
                binds[name] = " ".join(_escaped(w) for w in t.words)
                parts.append(f"phraseto_tsquery('simple', :{name})")
        return "f.doc @@ (" + " && ".join(parts) + ")", binds
    expr = " AND ".join('"' + " ".join(t.words) + '"' + ("*" if t.prefix else "") for t in terms)
    binds["fts_q"] = expr
    return "f.message_fts MATCH :fts_q", binds


_COMMON: dict[int, tuple[float, frozenset[str]]] = {}  # engine -> (read at, common lexemes)
COMMON_TTL = 300.0


def _common_words(conn: Connection) -> frozenset[str]:
    """The full-text index's most common lexemes (``pg_stats``, set by ANALYZE), cached a while."""
    key = id(conn.engine)
    now = time.monotonic()
    hit = _COMMON.get(key)
    if hit is not None and now - hit[0] < COMMON_TTL:
        return hit[1]
    elems = conn.execute(
        text(
            "SELECT most_common_elems::text::text[] FROM pg_stats "
            "WHERE tablename = 'message_fts' AND attname = 'doc' LIMIT 1"
        )
    ).scalar()
    words = frozenset(elems or ())
    _COMMON[key] = (now, words)
    return words


def _rare(conn: Connection, terms: list[Term]) -> bool:
    """Whether some term is outside the index's most common words (so the match set is small)."""
    common = _common_words(conn)
    for t in terms:
        if t.prefix:
            if not any(c.startswith(_escaped(t.words[-1])) for c in common):
                return True
        elif any(_escaped(w) not in common for w in t.words):
            return True
    return False


def _escaped(word: str) -> str:
    """``encode(convert_to(word, 'UTF8'), 'escape')``: non-ASCII bytes as ``\\ooo``."""
    return "".join(chr(b) if b < 128 else f"\\{b:03o}" for b in word.encode("utf-8"))


def _id_col(conn: Connection) -> str:
    return "f.message_id" if conn.dialect.name == "postgresql" else "f.rowid"


def _contains(conn: Connection, terms: list[Term]):
    """A condition on ``messages``: its content holds every term (one index probe per row)."""
    cond, binds = _match(conn, terms)
    sql = f"EXISTS (SELECT 1 FROM message_fts f WHERE {cond} AND {_id_col(conn)} = messages.id)"
    return text(sql).bindparams(**binds)


def _candidates(
    conn: Connection, terms: list[Term], before: int | None, after: int | None, n: int
) -> list[int]:
    """Ids of messages holding every term, newest first below ``before`` (or oldest first above
    ``after``), at most ``n``."""
    cond, binds = _match(conn, terms)
    idc = _id_col(conn)
    where = [cond]
    if before is not None:
        where.append(f"{idc} < :fts_before")
        binds["fts_before"] = before
    if after is not None:
        where.append(f"{idc} > :fts_after")
        binds["fts_after"] = after
    order = "ASC" if after is not None else "DESC"
    key = idc
    if conn.dialect.name == "postgresql" and _rare(conn, terms):
        # PostgreSQL guesses 0.5 % for a word outside its statistics and would walk the primary
        # key newest first, filtering every row; a rare word is found faster through the GIN
        # index and sorted (``+ 0``: an order the primary key cannot give)
        key = f"{idc} + 0"
    sql = f"SELECT {idc} FROM message_fts f WHERE {' AND '.join(where)} ORDER BY {key} {order} LIMIT :fts_n"
    binds["fts_n"] = n
    return [r[0] for r in conn.execute(text(sql), binds)]


# -- date ranges on PostgreSQL --------------------------------------------------------------------


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON) <select>``, its bind values typed as in the select."""

    inherit_cache = False

    def __init__(self, stmt):
        self.stmt = stmt


@compiles(_Explain, "postgresql")
def _explain_pg(element, compiler, **kw):
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.stmt, **kw)


def _sort_range(conn: Connection, f: Filters, conds: list) -> bool:
    """Whether to read a date range's rows through the best index and sort them (``id + 0``)
    rather than walk the primary key newest first: on PostgreSQL, for a range that ends
    (``until``) before the newest messages, when the planner expects at most
    :data:`SORTED_RANGE` matching rows. It multiplies the filters' selectivities as if matches
    were spread over the whole journal, so it would walk every newer message first (a day's
    range with a type and a sender: 414 566 rows read, 0.4 s, on 10^6)."""
    if conn.dialect.name != "postgresql" or f.until is None or f.mrn or f.control_id:
        return False
    plan = conn.execute(_Explain(select(messages.c.id).where(*conds))).scalar()
    return float(plan[0]["Plan"]["Plan Rows"]) <= SORTED_RANGE


def _filters_drive(conn: Connection, conds: list, terms: list[Term]) -> bool:
    """Whether a content search's other filters should drive it (their rows read through their
    index, sorted, each checked against the full-text index) instead of the full-text walk: on
    PostgreSQL, for common words only, when the planner expects at most :data:`FILTERS_DRIVE`
    rows for the filters. ``chest`` with status ``error`` and one facility on 10^6 messages: the
    walk read ~3,000 of the word's 200,000 candidates to fill a page (50-130 ms); driven, the
    (status, id) index is walked newest first, each row probed in the full-text index: 1.6 ms."""
    if conn.dialect.name != "postgresql" or not conds or _rare(conn, terms):
        return False
    plan = conn.execute(_Explain(select(messages.c.id).where(*conds))).scalar()
    return float(plan[0]["Plan"]["Plan Rows"]) <= FILTERS_DRIVE


# -- one page -------------------------------------------------------------------------------------


def search(
    conn: Connection,
    f: Filters,
    cols: list,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page:
    """One page of messages matching ``f`` (columns ``cols``, which must include ``messages.c.id``)."""
    conds, mrns = conditions(conn, f)
    terms = text_terms(f.text)
    driven = bool(terms) and not (f.mrn or f.control_id) and _filters_drive(conn, conds, terms)
    if terms and not (f.mrn or f.control_id or driven):
        return _walk_index(conn, terms, conds, cols, before, after, limit, mrns)
    if terms:  # a selective filter drives; each of its rows is checked against the index
        conds.append(_contains(conn, terms))
    key = messages.c.id + 0 if _sort_range(conn, f, conds) else messages.c.id
    q = select(*cols).where(*conds)
    if after is not None:
        rows = conn.execute(q.where(messages.c.id > after).order_by(key.asc()).limit(limit + 1)).all()
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        return Page(
            rows, rows[-1].id if rows else None, rows[0].id if rows and more_newer else None, mrns, terms
        )
    if before is not None:
        q = q.where(messages.c.id < before)
    rows = conn.execute(q.order_by(key.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        rows,
        rows[-1].id if rows and more else None,
        rows[0].id if rows and before is not None else None,
        mrns,
        terms,
    )


def _walk_index(conn, terms, conds, cols, before, after, limit, mrns) -> Page:
    """A content search driven by the full-text index: candidates newest first (oldest first for
    ``after``) in batches, the other filters applied to each batch, until a page is full."""
    rows: list = []
    cursor_before, cursor_after = before, after
    scanned = 0
    exhausted = False
    last: int | None = None
    batches = 0
    while len(rows) <= limit:
        if scanned >= MAX_SCANNED:
            break
        # the first probe a page's worth; then batches that double (500, 1000, 2000, ...): a
        # common word with selective filters reads its few thousand candidates in a few queries
        asked = min(BATCH << batches, MAX_SCANNED - scanned) if scanned else max(limit + 1, 100)
        batches += 1 if scanned else 0
        ids = _candidates(conn, terms, cursor_before, cursor_after, asked)
        if not ids:
            exhausted = True
            break
        scanned += len(ids)
        last = ids[-1]
        q = select(*cols).where(messages.c.id.in_(ids), *conds)
        got = conn.execute(q).all()
        got.sort(key=lambda r: r.id, reverse=after is None)
        rows.extend(got)
        if after is not None:
            cursor_after = last
        else:
            cursor_before = last
        if len(ids) < asked:  # the index has no more: no second probe for a rare word
            exhausted = True
            break
    partial = not exhausted and len(rows) <= limit
    more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
        newer = rows[0].id if rows and more else (last if partial else None)
        return Page(rows, rows[-1].id if rows else None, newer, mrns, terms, partial)
    if more:
        older = rows[-1].id
    elif partial:
        older = last
    else:
        older = None
    return Page(rows, older, rows[0].id if rows and before is not None else None, mrns, terms, partial)
