"""Charts read a page at a time, for the FHIR face: patient search with every filter in SQL (one
count and one page query), the page's patients with their identifiers, names, addresses and
phones in one query per table, and the chart's lists (visits with their locations, insurance,
allergies, diagnoses) filtered and paged the same way.

Each row comes back as a plain dict with ``message_id`` (the journal row of the message that last
changed it: the FHIR ``versionId``) and ``updated_at``. Nothing here writes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from interface.store import chart_locations, fastsql
from interface.store import chart_schema as cs

# A comparison on a column: (operator, value) with operator one of eq, ne, ge, le, gt, lt, sa
# (starts after), eb (ends before); for text dates ``eq`` is "starts with".
Compare = tuple[str, Any]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _prefix(column, value: str) -> ColumnElement[bool]:
    """``column`` starts with ``value`` (both lower case): the exact LIKE check and, when the
    value ends in a letter or digit, the range ``value`` <= column < ``value`` with its last
    character moved up one, which an index on the column can serve under any collation."""
    value = value.lower()
    like = _like(column, value)
    if not value or not ("a" <= value[-1] < "z" or "0" <= value[-1] < "9"):
        return like
    upper = value[:-1] + chr(ord(value[-1]) + 1)
    return and_(column >= value, column < upper, like)


def compare(column, comparisons: list[Compare], text: bool = False) -> list[ColumnElement[bool]]:
    """SQL conditions for ``comparisons`` on ``column``. ``text``: the column holds ISO text of
    any precision, so ``eq`` is a prefix match and ``le``/``lt`` compare against the value's end
    (``le 2026-11`` keeps ``2026-11-30T10:00``)."""
    out: list[ColumnElement[bool]] = []
    for op, value in comparisons:
        if text:
            top = after(value)
            conds = {
                # starts with: the LIKE, and the range it lies in, which an index serves
                "eq": lambda: (
                    and_(column >= value, column < top, _like(column, value)) if top else _like(column, value)
                ),
                "ne": lambda: or_(column.is_(None), ~_like(column, value)),
                "ge": lambda: column >= value,
                "gt": lambda: column >= top,
                "sa": lambda: column >= top,
                "le": lambda: column < top,
                "lt": lambda: column < value,
                "eb": lambda: column < value,
            }
        else:
            conds = {
                "eq": lambda: column == value,
                "ne": lambda: column != value,
                "ge": lambda: column >= value,
                "gt": lambda: column > value,
                "sa": lambda: column > value,
                "le": lambda: column <= value,
                "lt": lambda: column < value,
                "eb": lambda: column < value,
            }
        out.append(conds[op]())
    return out


def after(value: str) -> str:
    """The first ISO text after every text starting with ``value`` (a date ``YYYY[-MM[-DD]]``:
    the next year, month or day; else ``value`` itself with its last character moved up)."""
    parts = value.split("-")
    if all(x.isdigit() for x in parts) and [len(x) for x in parts] in ([4], [4, 2], [4, 2, 2]):
        if len(parts) == 1:
            return f"{int(parts[0]) + 1:04d}"
        if len(parts) == 2:
            y, m = int(parts[0]), int(parts[1])
            return f"{y + m // 12:04d}-{m % 12 + 1:02d}"
        return (date.fromisoformat(value) + timedelta(days=1)).isoformat()
    return value[:-1] + chr(ord(value[-1]) + 1) if value else value


def _like(column, value: str) -> ColumnElement[bool]:
    return column.like(_like_pattern(value), escape="\\")


# -- patients -------------------------------------------------------------------------------------


def search_patients(
    conn: Connection,
    *,
    mrns: list[str] | None = None,
    family: str | None = None,
    given: str | None = None,
    name: str | None = None,
    birth: list[Compare] = (),  # type: ignore[assignment]
    sexes: list[str] | None = None,
    updated: list[Compare] = (),  # type: ignore[assignment]
    count: int = 20,
    offset: int = 0,
    total: str = "accurate",
    cap: int = 10000,
) -> tuple[int | None, list[int], bool]:
    """(the number of matches or None, the page's patient ids, whether more follow), not
    merged-away MRNs, ordered by family, given, MRN. Names match as case-insensitive prefixes
    (``name``: family or given); ``sexes``: the stored sex values (lower case) that count;
    ``mrns``: only these. ``total``: ``accurate`` counts every match; ``bounded`` needs no count
    when the first page holds every match and counts at most ``cap`` + 1 otherwise (None past
    ``cap``); ``none`` never counts.

    The statements are compiled once per shape of the search (which filters, how many values:
    :class:`_Search`) and run through ``fastsql``; building and running them through
    SQLAlchemy's expression API cost more than SQLite's own work for a page."""
    b = _Search((mrns, family, given, name, list(birth), sexes, list(updated)))
    st = _search_statements(b)
    params = {**b.values, "limit": count + 1, "offset": offset, "cap": cap + 1}
    ids = [r.id for r in fastsql.run(conn, st["page"], params)]
    more = len(ids) > count
    ids = ids[:count]
    found: int | None = None
    if total == "bounded" and offset == 0 and not more:
        found = len(ids)
    elif total == "bounded":
        found = fastsql.run(conn, st["bounded"], params).scalar()
        found = found if found is not None and found <= cap else None
    elif total == "accurate":
        found = fastsql.run(conn, st["accurate"], params).scalar()
    return found, ids, more


class _Search:
    """A patient search's filters written once for two uses: its *shape* (which conditions,
    how many values each: the key of its compiled statements) and its *values* (binds ``p0``,
    ``p1``... in order), without building SQL; and, when the shape is new, the SQL conditions
    themselves over the same binds (``build``). The same calls make all three, so the binds
    always line up with the conditions."""

    def __init__(self, args: tuple) -> None:
        self.args = args
        self.shape: list[tuple] = []
        self.values: dict[str, Any] = {}
        self.conds: list[ColumnElement[bool]] | None = None  # set by build
        self._filters(*args)

    def _bind(self, value: Any):
        name = f"p{len(self.values)}"
        self.values[name] = value
        return bindparam(name) if self.conds is not None else None

    def _filters(self, mrns, family, given, name, birth, sexes, updated) -> None:
        t = cs.patients
        fam, giv = func.lower(t.c.family), func.lower(t.c.given)
        # not ``merged_into IS NULL``: nearly every row matches it, and SQLite (without
        # statistics) would pick that index over the name's; as an expression it is checked on
        # the rows found
        self._add(("live",), lambda: func.coalesce(t.c.merged_into, "") == "")
        if mrns is not None:
            binds = [self._bind(m) for m in mrns]
            self._add(("mrn", len(binds)), lambda: t.c.mrn.in_(binds))
        if family:
            self._prefix("family", fam, family.strip())
        if given:
            self._prefix("given", giv, given.strip())
        if name:
            start = len(self.conds) if self.conds is not None else 0
            self._prefix("name_family", fam, name.strip())
            self._prefix("name_given", giv, name.strip())
            if self.conds is not None:
                self.conds[start:] = [or_(*self.conds[start:])]
        if sexes is not None:
            binds = [self._bind(x) for x in sexes]
            self._add(("sex", len(binds)), lambda: func.lower(t.c.sex).in_(binds))
        for op, value in birth:
            self._compare_text("birth", t.c.birth_date, op, value)
        for op, value in updated:
            bound = self._bind(value)
            self._add(("updated", op), lambda: compare(t.c.updated_at, [(op, bound)])[0])

    def _add(self, shape: tuple, cond) -> None:
        self.shape.append(shape)
        if self.conds is not None:
            self.conds.append(cond())

    def _prefix(self, tag: str, column, value: str) -> None:
        """As :func:`_prefix`: the LIKE, and the index range when the value ends in a letter or
        digit."""
        value = value.lower()
        like = self._bind(_like_pattern(value))
        if value and ("a" <= value[-1] < "z" or "0" <= value[-1] < "9"):
            low, high = self._bind(value), self._bind(value[:-1] + chr(ord(value[-1]) + 1))
            self._add(
                (tag, "range"), lambda: and_(column >= low, column < high, column.like(like, escape="\\"))
            )
        else:
            self._add((tag, "like"), lambda: column.like(like, escape="\\"))

    def _compare_text(self, tag: str, column, op: str, value: str) -> None:
        """As :func:`compare` with ``text=True``."""
        top = after(value)
        if op == "eq" and top:
            like, low, high = self._bind(_like_pattern(value)), self._bind(value), self._bind(top)
            self._add(
                (tag, op, "range"), lambda: and_(column >= low, column < high, column.like(like, escape="\\"))
            )
        elif op in ("eq", "ne"):
            like = self._bind(_like_pattern(value))
            if op == "eq":
                self._add((tag, op), lambda: column.like(like, escape="\\"))
            else:
                self._add((tag, op), lambda: or_(column.is_(None), ~column.like(like, escape="\\")))
        elif op in ("gt", "sa", "le"):
            bound = self._bind(top)
            self._add((tag, op), lambda: column >= bound if op != "le" else column < bound)
        else:  # ge, lt, eb: against the value itself
            bound = self._bind(value)
            self._add((tag, op), lambda: column >= bound if op == "ge" else column < bound)

    def build(self) -> list[ColumnElement[bool]]:
        """The SQL conditions, over binds named as :attr:`values` (the same calls again)."""
        self.shape, self.values, self.conds = [], {}, []
        self._filters(*self.args)
        return self.conds


_SEARCHES: dict[tuple, dict[str, fastsql.Statement]] = {}


def _search_statements(b: _Search) -> dict[str, fastsql.Statement]:
    key = tuple(b.shape)
    found = _SEARCHES.get(key)
    if found is None:
        conds = b.build()
        t = cs.patients
        limit, offset = bindparam("limit", type_=Integer), bindparam("offset", type_=Integer)
        page = (
            select(t.c.id).where(*conds).order_by(t.c.family, t.c.given, t.c.mrn).limit(limit).offset(offset)
        )
        some = select(t.c.id).where(*conds).limit(bindparam("cap", type_=Integer)).subquery()
        found = _SEARCHES[key] = {
            "page": fastsql.Statement(page),
            "bounded": fastsql.Statement(select(func.count()).select_from(some)),
            "accurate": fastsql.Statement(select(func.count()).select_from(t).where(*conds)),
        }
    return found


def _like_pattern(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# The page's statements are built and compiled once (``fastsql``: a read of one patient is seven
# small statements, and through ``Connection.execute`` each cost more Python than SQLite): one
# statement per (table, number of ids), IN lists in pieces of ``fastsql.IN_CHUNK``.
_STATEMENTS: dict[tuple, fastsql.Statement] = {}


def _by_ids(table, column: str, n: int) -> fastsql.Statement:
    st = _STATEMENTS.get((table.name, column, n))
    if st is None:
        q = select(table).where(table.c[column].in_(fastsql.in_binds("k", n)))
        if column == "patient_id":
            q = q.order_by(table.c.patient_id, *((table.c.seq,) if "seq" in table.c else ()), table.c.id)
        elif column == "merged_into":
            q = q.order_by(table.c.mrn)
        st = _STATEMENTS[(table.name, column, n)] = fastsql.Statement(q)
    return st


def _rows(conn: Connection, table, column: str, values: list[Any]) -> list[Any]:
    """The rows of ``table`` whose ``column`` is one of ``values`` (``_mapping`` dicts)."""
    out: list[Any] = []
    for part in fastsql.chunks(list(values)):
        found = fastsql.run(conn, _by_ids(table, column, len(part)), fastsql.in_values("k", part))
        out += [r._mapping for r in found]
    return out


def patient_ids(conn: Connection, mrns: list[str]) -> dict[str, int]:
    """``{mrn: patient id}`` of the MRNs as stored (merged-away MRNs: their own row)."""
    if not mrns:
        return {}
    return {r["mrn"]: r["id"] for r in _rows(conn, cs.patients, "mrn", mrns)}


def survivor_row(conn: Connection, mrn: str) -> Any | None:
    """The patients row (a mapping) an MRN now lives under, following merges; None when the MRN
    is unknown or its merges loop (as ``chart.resolve_mrn``)."""
    found = _rows(conn, cs.patients, "mrn", [mrn])
    seen: set[str] = set()
    while found and found[0]["merged_into"]:
        row = found[0]
        if row["mrn"] in seen:
            return None
        seen.add(row["mrn"])
        nxt = _rows(conn, cs.patients, "mrn", [row["merged_into"]])
        if not nxt:
            return row
        found = nxt
    return found[0] if found else None


def _children(conn: Connection, table, ids: list[int]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for r in _rows(conn, table, "patient_id", ids):
        out.setdefault(r["patient_id"], []).append(r)
    return out


_NAME = ("family", "given", "middle", "prefix", "suffix", "degree")
_ADDRESS = ("street", "other", "city", "state", "postal_code", "country")
_PHONE_ORDER = {"phones": 0, "business_phones": 1, "telecom": 2}  # PID-13, PID-14, PID-40
# the tables a FHIR Patient is built from (its versions: ``patient_versions``)
DEMOGRAPHIC_TABLES = (
    "patients",
    "patient_identifiers",
    "patient_names",
    "patient_addresses",
    "patient_phones",
)


def patients(conn: Connection, ids: list[int], rows: list[Any] | None = None) -> list[dict]:
    """The chart records (the fields a FHIR Patient needs, as ``chart_read.get_chart`` names
    them) of these patient ids, in that order: one query per table for the whole page
    (``rows``: the patients rows, when the caller has them already). ``message_id`` and
    ``updated_at`` are the Patient's version: the newest change it shows (``latest_versions``),
    else the patients row's stamp."""
    if not ids:
        return []
    found = {r["id"]: r for r in (rows if rows is not None else _rows(conn, cs.patients, "id", ids))}
    idents = _children(conn, cs.patient_identifiers, ids)
    names = _children(conn, cs.patient_names, ids)
    addresses = _children(conn, cs.patient_addresses, ids)
    phones = _children(conn, cs.patient_phones, ids)
    merged = merged_from(conn, [found[i]["mrn"] for i in ids if i in found])
    versions = latest_versions(conn, ids)
    out = []
    for i in ids:
        p = found.get(i)
        if p is None:
            continue
        version, at = versions.get(i, (p["message_id"], p["updated_at"]))
        out.append(
            {
                "patient_id": i,
                "mrn": p["mrn"],
                "requested_mrn": p["mrn"],
                "merged_from": merged.get(p["mrn"], []),
                "identifiers": [
                    {"value": r["value"], "authority": r["authority"] or None, "type": r["type"] or None}
                    for r in idents.get(i, [])
                ],
                "name": {**{k: p[k] for k in _NAME}, "type": p["name_type"]},
                "other_names": [{**{k: n[k] for k in _NAME}, "type": n["type"]} for n in names.get(i, [])],
                "birth_date": p["birth_date"],
                "sex": p["sex"],
                "ssn": p["ssn"],
                "death_at": p["death_at"],
                "deceased": p["deceased"],
                "addresses": [
                    {**{k: a[k] for k in _ADDRESS}, "type": a["type"]} for a in addresses.get(i, [])
                ],
                "phones": [
                    {k: ph[k] for k in ("number", "use", "equipment", "email", "source")}
                    for ph in sorted(phones.get(i, []), key=lambda ph: _PHONE_ORDER.get(ph["source"], 0))
                ],
                "updated_at": _iso(at),
                "message_id": version,
            }
        )
    return out


def merged_from(conn: Connection, mrns: list[str]) -> dict[str, list[str]]:
    """``{survivor MRN: every MRN merged into it, directly or through a chain}``."""
    out: dict[str, list[str]] = {}
    owner = {m: m for m in mrns}  # an MRN on the way -> the survivor asked about
    todo = list(mrns)
    while todo:
        rows = sorted(_rows(conn, cs.patients, "merged_into", todo), key=lambda r: r["mrn"])
        todo = []
        for r in rows:
            survivor = owner[r["merged_into"]]
            if r["mrn"] in owner or r["mrn"] == survivor:
                continue
            owner[r["mrn"]] = survivor
            out.setdefault(survivor, []).append(r["mrn"])
            todo.append(r["mrn"])
    return out


# -- Patient versions ---------------------------------------------------------------------------
#
# A FHIR Patient changes when a message changes what it shows: the patients row's name, birth
# date, sex, death, MRN or merge, and the identifier, other-name, address and phone lists. Each
# such message is a version (``versionId``: its journal id); ``chart_history`` holds the changes.

PATIENT_FIELDS = (*_NAME, "name_type", "birth_date", "sex", "death_at", "deceased", "mrn", "merged_into")
_QUIET = ("ignored_stale", "redirect")  # history rows that change nothing


def _shown(h) -> list[ColumnElement[bool]]:
    """The conditions on ``chart_history`` rows that change what a Patient shows."""
    # the lists as one bind each, not an expanding IN: the statements stay compiled once
    return [
        h.c.table_name.in_([literal(t) for t in DEMOGRAPHIC_TABLES]),
        h.c.action.not_in([literal(a) for a in _QUIET]),
        or_(
            h.c.table_name != "patients",
            h.c.field.is_(None),
            h.c.field.in_([literal(f) for f in PATIENT_FIELDS]),
        ),
    ]


def latest_versions(conn: Connection, ids: list[int]) -> dict[int, tuple[int | None, Any]]:
    """``{patient id: (message id, at)}`` of the newest change each patient's Patient shows
    (absent: no such history, as for rows loaded without messages)."""
    out: dict[int, tuple[int | None, Any]] = {}
    for part in fastsql.chunks(list(ids)):
        for r in fastsql.run(conn, _latest(len(part)), fastsql.in_values("k", part)):
            out[r.patient_id] = (r.message_id, _iso(r.at))
    return out


def _latest(n: int) -> fastsql.Statement:
    """:func:`latest_versions`' statement for ``n`` ids, built and compiled once."""
    st = _STATEMENTS.get(("latest_versions", n))
    if st is None:
        h = cs.chart_history
        newest = (
            select(func.max(h.c.id))
            .where(h.c.patient_id.in_(fastsql.in_binds("k", n)), *_shown(h))
            .group_by(h.c.patient_id)
        )
        q = select(h.c.patient_id, h.c.message_id, h.c.at).where(h.c.id.in_(newest.scalar_subquery()))
        st = _STATEMENTS[("latest_versions", n)] = fastsql.Statement(q)
    return st


def patient_changes(conn: Connection, patient_id: int, limit: int = 5000) -> list[dict]:
    """The changes a patient's Patient shows, newest first (at most ``limit``): ``{id,
    message_id, at, table, row_id, field, action, old, new}`` (``old``/``new`` as stored text)."""
    h = cs.chart_history
    q = select(h).where(h.c.patient_id == patient_id, *_shown(h)).order_by(h.c.id.desc()).limit(limit)
    return [
        {
            "id": r.id,
            "message_id": r.message_id,
            "at": _iso(r.at),
            "table": r.table_name,
            "row_id": r.row_id,
            "field": r.field,
            "action": r.action,
            "old": r.old_value,
            "new": r.new_value,
        }
        for r in conn.execute(q)
    ]


def mrns_of(conn: Connection, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    t = cs.patients
    return {r.id: r.mrn for r in conn.execute(select(t.c.id, t.c.mrn).where(t.c.id.in_(ids)))}


# -- the chart's lists ----------------------------------------------------------------------------


def list_rows(
    conn: Connection,
    table,
    *,
    ids: list[int] | None = None,
    patient_ids: list[int] | None = None,
    where: list[ColumnElement[bool]] = (),  # type: ignore[assignment]
    updated: list[Compare] = (),  # type: ignore[assignment]
    count: int = 20,
    offset: int = 0,
) -> tuple[int, list[dict]]:
    """(matches, one page of rows as dicts with ``mrn``) of ``table`` (visits, insurance,
    allergies, diagnoses): rows by id or by patient, newest first (by id)."""
    if not where and not updated and (ids is None) != (patient_ids is None):
        found = _list_page(
            conn, table, "id" if ids is not None else "patient_id", ids or patient_ids or [], count, offset
        )
    else:
        found = _list_page_built(conn, table, ids, patient_ids, where, updated, count, offset)
    total, page = found
    rows = []
    for r in page:
        d = dict(r._mapping)
        d["mrn"] = d.pop("patient_mrn")
        d["updated_at"] = _iso(d["updated_at"])
        rows.append(d)
    return total, rows


def _list_query(table, conds: list[ColumnElement[bool]], count, offset):
    p = cs.patients
    total = select(func.count()).select_from(table).where(*conds)
    page = (
        select(table, p.c.mrn.label("patient_mrn"))
        .join(p, p.c.id == table.c.patient_id)
        .where(*conds)
        .order_by(table.c.id.desc())
        .limit(count)
        .offset(offset)
    )
    return total, page


def _list_page_built(conn, table, ids, patient_ids, where, updated, count: int, offset: int):
    """:func:`list_rows` with filters: the statements built for the call."""
    conds = list(where) + compare(table.c.updated_at, list(updated))
    if ids is not None:
        conds.append(table.c.id.in_(ids))
    if patient_ids is not None:
        conds.append(table.c.patient_id.in_(patient_ids))
    total, page = _list_query(table, conds, count, offset)
    return conn.execute(total).scalar_one(), list(conn.execute(page))


def _list_page(conn, table, column: str, values: list[int], count: int, offset: int):
    """:func:`list_rows` by id or by patient alone (what every FHIR list search by patient
    asks): the statements built and compiled once per (table, column, number of values)."""
    if not values or len(values) > fastsql.IN_CHUNK:
        return _list_page_built(
            conn,
            table,
            values if column == "id" else None,
            values if column != "id" else None,
            [],
            [],
            count,
            offset,
        )
    key = ("list", table.name, column, len(values))
    st = _STATEMENTS.get(key)
    if st is None:
        conds = [table.c[column].in_(fastsql.in_binds("k", len(values)))]
        total, page = _list_query(
            table, conds, bindparam("count", type_=Integer), bindparam("offset", type_=Integer)
        )
        st = _STATEMENTS[key] = fastsql.Statement(total)
        _STATEMENTS[(*key, "page")] = fastsql.Statement(page)
    params = fastsql.in_values("k", values)
    total_found = fastsql.run(conn, st, params).scalar()
    page_rows = fastsql.run(conn, _STATEMENTS[(*key, "page")], {**params, "count": count, "offset": offset})
    return total_found, list(page_rows)


def visit_extras(conn: Connection, visits: list[dict]) -> None:
    """Add ``locations`` (the timeline, oldest first) to each visit row, in one query."""
    located = chart_locations.locations_for(conn, [v["id"] for v in visits])
    for v in visits:
        v["locations"] = located.get(v["id"], [])


def visit_numbers(conn: Connection, ids: list[int]) -> dict[int, dict]:
    """``{visit id: {visit_number, visit_authority}}`` (for diagnoses' encounters)."""
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    v = cs.visits
    q = select(v.c.id, v.c.visit_number, v.c.visit_authority).where(v.c.id.in_(ids))
    return {
        r.id: {"visit_number": r.visit_number, "visit_authority": r.visit_authority} for r in conn.execute(q)
    }


def visits_by_number(conn: Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``{(mrn, visit number): visit id}`` for documents' encounters (MRNs as they are now)."""
    pairs = [(m, n) for m, n in set(pairs) if m and n]
    if not pairs:
        return {}
    v, p = cs.visits, cs.patients
    q = (
        select(v.c.id, v.c.visit_number, p.c.mrn)
        .join(p, p.c.id == v.c.patient_id)
        .where(v.c.visit_number.in_({n for _, n in pairs}), p.c.mrn.in_({m for m, _ in pairs}))
        .order_by(v.c.id)
    )
    out: dict[tuple[str, str], int] = {}
    for r in conn.execute(q):
        out.setdefault((r.mrn, r.visit_number), r.id)
    return out
