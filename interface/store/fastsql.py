"""Hot-path statements, compiled once per dialect and run on the DBAPI cursor.

Why this exists: on the worker's path one ADT message runs ~25 small statements (chart store and
queue bookkeeping), and the journal writer a few per group commit. Through ``Connection.execute`` each costs 15-60 µs of SQLAlchemy Python —
cache-key generation, the execution context, bind and result processing set up per call —
which a py-spy profile under load put at about half of the engine's CPU (docs/benchmarks.md),
while SQLite itself needs 2-3 µs for such a statement. So for the few statements on that path
we keep SQLAlchemy for what it is good at — building the SQL, compiling it for the dialect,
the types' bind and result processors — and do it **once**: :class:`Statement` compiles per
(dialect, parameter keys) and caches the SQL text, the parameter order and the processors;
:func:`run`, :func:`run_many` and :func:`run_many_returning` hand them to the cursor of the connection's DBAPI connection,
inside the transaction the SQLAlchemy ``Connection`` has begun, so a statement run here commits
or rolls back (savepoints included) with everything else.

What is kept from ``Connection.execute``: DBAPI errors are raised as SQLAlchemy's
``DBAPIError`` subclasses (``OperationalError`` ...), so callers' error handling is unchanged;
when the engine has ``before_cursor_execute`` listeners (the test-only fault injection in
``interface.engine.writer``, statement counting in tests) every statement goes through
``Connection.execute`` instead, so those hooks see all of them. Not supported (use
``conn.execute``): Python-side column defaults other than scalars, ORM, ``inserted_primary_key``
(write ``.returning(table.c.id)``).
"""

from __future__ import annotations

import operator
from typing import Any, Iterable, Sequence

from sqlalchemy import bindparam
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

_MISSING = object()
_TEMPORAL = (sqltypes.DateTime, sqltypes.Date, sqltypes.Time)


class Row:
    """A result row: attributes by column name, ``_mapping`` (a dict), tuple-like indexing."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]):
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, index: int) -> Any:
        return list(self._mapping.values())[index]

    def __iter__(self):
        return iter(self._mapping.values())

    def __len__(self) -> int:
        return len(self._mapping)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and other._mapping == self._mapping

    def __repr__(self) -> str:
        return f"Row({self._mapping!r})"

    def _asdict(self) -> dict[str, Any]:
        return dict(self._mapping)


class Result:
    """The rows of one statement (already fetched) and its rowcount."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[Row], rowcount: int):
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Row:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def all(self) -> list[Row]:
        return self.rows

    def scalar(self) -> Any:
        return next(iter(self.rows[0]._mapping.values())) if self.rows else None

    def __iter__(self):
        return iter(self.rows)


class _Compiled:
    """One statement compiled for one dialect and one set of parameter keys."""

    __slots__ = (
        "sql",
        "binds",
        "positional",
        "columns",
        "names",
        "defaults",
        "getter",
        "bind_procs",
        "col_names",
        "col_procs",
        "procs",
        "single",
        "result_procs",
    )

    def __init__(self, stmt, dialect, keys: Sequence[str] | None):
        c = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        if "POSTCOMPILE" in c.string:
            raise TypeError("statement has an expanding IN: write it without, or use conn.execute")
        if getattr(c, "insert_prefetch", None) or getattr(c, "update_prefetch", None):
            raise TypeError("statement needs Python-side column defaults: use conn.execute")
        if getattr(c, "escaped_bind_names", None):
            raise TypeError("statement has escaped bind names: use conn.execute")
        self.sql = c.string
        self.positional = bool(c.positional)
        if c.positional:
            order = [(name, c.binds[name]) for name in c.positiontup]
        else:
            order = [(name, bp) for bp, name in c.bind_names.items()]
        binds = []
        for name, bp in order:
            if bp.callable is not None:
                raise TypeError("statement has a callable bind: use conn.execute")
            default = _MISSING if bp.required else bp.value
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None and isinstance(bp.type, _TEMPORAL):
                proc = _memo_last(proc)
            binds.append((name, bp.key, default, proc))
        self.binds = binds
        # parameters: one itemgetter over the caller's dict (plus the statement's own literal
        # and default values), then the processors of the few binds that have one
        self.names = tuple(b[0] for b in binds)
        self.defaults = {name: default for name, key, default, _ in binds if default is not _MISSING}
        self.getter = operator.itemgetter(*self.names) if self.names else None
        self.bind_procs = tuple((i, b[3]) for i, b in enumerate(binds) if b[3] is not None)
        # one processor (or None) per bind, in order: a comprehension over it is the cheapest
        # loop when most binds have one (the guarded text columns do)
        self.procs = tuple(b[3] for b in binds) if self.bind_procs else None
        self.single = len(binds) == 1
        cols = []
        described = (
            getattr(stmt, "returning_column_descriptions", None) if getattr(stmt, "_returning", ()) else None
        )
        if described is None and hasattr(stmt, "selected_columns"):
            described = [{"name": col.key, "type": col.type} for col in stmt.selected_columns]
        for d in described or ():
            proc = d["type"].dialect_impl(dialect).result_processor(dialect, None)
            if proc is not None and isinstance(d["type"], _TEMPORAL):
                proc = _memo_text(proc)
            cols.append((d["name"], proc))
        self.columns = cols
        self.col_names = tuple(c[0] for c in cols)
        self.col_procs = tuple((i, c[1]) for i, c in enumerate(cols) if c[1] is not None)
        self.result_procs = tuple(c[1] for c in cols) if self.col_procs else None

    def params(self, given: dict[str, Any]):
        getter = self.getter
        if getter is None:
            return () if self.positional else {}
        src = {**self.defaults, **given} if self.defaults else given
        try:
            vals = getter(src)
        except KeyError as exc:
            raise KeyError(f"statement parameter {exc.args[0]!r} is missing") from None
        if self.single:
            vals = (vals,)
        procs = self.procs
        if procs is not None:
            vals = [v if p is None or v is None else p(v) for p, v in zip(procs, vals)]
        return tuple(vals) if self.positional else dict(zip(self.names, vals))

    def rows(self, raw_rows) -> list[Row]:
        names, procs = self.col_names, self.result_procs
        if procs is None:
            return [Row(dict(zip(names, raw))) for raw in raw_rows]
        return [
            Row(dict(zip(names, [v if p is None or v is None else p(v) for p, v in zip(procs, raw)])))
            for raw in raw_rows
        ]


def _memo_last(proc):
    """A bind processor that remembers its last input by identity: the same ``now`` datetime
    goes into most of an item's rows (formatting it is most of SQLite's bind cost)."""
    cell = [(_MISSING, None)]

    def run(value):
        last = cell[0]
        if last[0] is value:
            return last[1]
        out = proc(value)
        cell[0] = (value, out)  # one tuple: threads never see a mismatched pair
        return out

    return run


def _memo_text(proc, size: int = 4096):
    """A result processor (SQLite: text -> datetime) remembering recent inputs by value."""
    cache: dict = {}

    def run(value):
        out = cache.get(value, _MISSING)
        if out is _MISSING:
            if len(cache) >= size:
                cache.clear()
            out = cache[value] = proc(value)
        return out

    return run


class Statement:
    """A SQLAlchemy Core statement to run with :func:`run` / :func:`run_many`.

    ``keyed=True`` for INSERT/UPDATE whose columns are the parameters' keys (as with
    ``conn.execute(insert(t), params)``): compiled once per distinct key set."""

    __slots__ = ("stmt", "keyed", "_cache")

    def __init__(self, stmt, *, keyed: bool = False):
        self.stmt = stmt
        self.keyed = keyed
        self._cache: dict = {}

    def compiled(self, dialect, keys) -> _Compiled:
        ck = (dialect.name, keys) if self.keyed else dialect.name
        c = self._cache.get(ck)
        if c is None:
            c = self._cache[ck] = _Compiled(self.stmt, dialect, list(keys) if self.keyed else None)
        return c


def _slow(conn: Connection) -> bool:
    """True when the engine has cursor-level listeners (tests, fault injection): use execute."""
    return bool(conn.dispatch.before_cursor_execute) or not conn.in_transaction()


def _raise(conn: Connection, sql: str, params, exc: Exception):
    dialect = conn.dialect
    raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


class _Cursor:
    """``with _Cursor(conn, sql, args) as cur``: the connection's DBAPI cursor, closed after;
    a DBAPI error inside is re-raised as SQLAlchemy's (a class, not @contextmanager: it runs
    per statement)."""

    __slots__ = ("conn", "sql", "args", "cur")

    def __init__(self, conn: Connection, sql: str, args):
        self.conn, self.sql, self.args = conn, sql, args

    def __enter__(self):
        self.cur = self.conn.connection.dbapi_connection.cursor()
        return self.cur

    def __exit__(self, tp, exc, tb) -> bool:
        self.cur.close()
        if exc is not None and isinstance(exc, self.conn.dialect.loaded_dbapi.Error):
            _raise(self.conn, self.sql, self.args, exc)
        return False


IN_CHUNK = 64  # values per ``IN (...)``: a list is queried in pieces of at most this many


def in_binds(prefix: str, n: int) -> list:
    """``column.in_(in_binds("k", n))``: an ``IN`` of ``n`` binds named ``k0`` .. ``k<n-1>``.
    Statements here cannot use an expanding IN (its SQL is rendered per call), so a statement
    with an IN is built once per list length (cache it by ``n``) and given
    :func:`in_values`; lists longer than :data:`IN_CHUNK` are queried in pieces."""
    return [bindparam(f"{prefix}{i}") for i in range(n)]


def in_values(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters for :func:`in_binds` (same prefix, same length)."""
    return {f"{prefix}{i}": v for i, v in enumerate(values)}


def chunks(values: Sequence[Any], size: int = IN_CHUNK):
    """``values`` in consecutive pieces of at most ``size``."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def run(conn: Connection, st: Statement, params: dict[str, Any] | None = None):
    """Execute one statement with one parameter set; returns :class:`Result` (rows fetched)."""
    params = params or {}
    if conn.dispatch.before_cursor_execute or not conn.in_transaction():  # _slow, inlined
        return conn.execute(st.stmt, params)
    dialect = conn.dialect
    c = None if st.keyed else st._cache.get(dialect.name)  # Statement.compiled, inlined
    if c is None:
        c = st.compiled(dialect, tuple(params) if st.keyed else None)
    args = c.params(params)
    cur = conn.connection.dbapi_connection.cursor()  # _Cursor, inlined (once per statement)
    try:
        cur.execute(c.sql, args)
        rows = c.rows(cur.fetchall()) if c.columns else []
        return Result(rows, cur.rowcount)
    except dialect.loaded_dbapi.Error as exc:
        _raise(conn, c.sql, args, exc)
        raise  # not reached: _raise raises
    finally:
        cur.close()


def run_many(conn: Connection, st: Statement, rows: Iterable[dict[str, Any]]) -> None:
    """Execute one statement for many parameter sets (no results); all sets share the keys of
    the first one (as with ``conn.execute(insert(t), [...])``)."""
    rows = list(rows)
    if not rows:
        return
    if _slow(conn):
        conn.execute(st.stmt, rows)
        return
    c = st.compiled(conn.dialect, tuple(rows[0]) if st.keyed else None)
    args = [c.params(r) for r in rows]
    with _Cursor(conn, c.sql, args[:1]) as cur:
        cur.executemany(c.sql, args)


def run_many_returning(conn: Connection, st: Statement, rows: Iterable[dict[str, Any]]) -> list[Row]:
    """INSERT ... RETURNING for many parameter sets: one result row per set, in order.
    PostgreSQL: one ``executemany(returning=True)`` (psycopg pipelines it: one round trip).
    SQLite: one execute per set (sqlite3's executemany cannot return rows; each costs a few
    µs)."""
    rows = list(rows)
    if not rows:
        return []
    if _slow(conn):
        return [conn.execute(st.stmt, r).one() for r in rows]
    c = st.compiled(conn.dialect, tuple(rows[0]) if st.keyed else None)
    args = [c.params(r) for r in rows]
    out = []
    with _Cursor(conn, c.sql, args[:1]) as cur:
        if conn.dialect.name == "postgresql":
            cur.executemany(c.sql, args, returning=True)
            while True:
                out.extend(cur.fetchall())
                if not cur.nextset():
                    break
        else:
            for a in args:
                cur.execute(c.sql, a)
                out.extend(cur.fetchall())
    if len(out) != len(rows):
        raise RuntimeError(f"expected {len(rows)} returned rows, got {len(out)}")
    return c.rows(out)


class Savepoint:
    """``SAVEPOINT`` on the cursor (what ``conn.begin_nested()`` does, without its bookkeeping,
    which cost about as much as the item's chart statements). Same two exits: :meth:`commit`
    (RELEASE) and :meth:`rollback` (ROLLBACK TO, then RELEASE). Statements run through
    ``conn.execute`` in between are inside it too: it is the database's savepoint."""

    __slots__ = ("conn", "name", "slow", "_nested")

    def __init__(self, conn: Connection, name: str = "item"):
        self.conn = conn
        self.name = name
        self.slow = _slow(conn)
        self._nested = conn.begin_nested() if self.slow else None
        if not self.slow:
            self._exec(f"SAVEPOINT {name}")

    def _exec(self, sql: str) -> None:
        with _Cursor(self.conn, sql, ()) as cur:
            cur.execute(sql)

    def commit(self) -> None:
        if self._nested is not None:
            self._nested.commit()
        else:
            self._exec(f"RELEASE SAVEPOINT {self.name}")

    def rollback(self) -> None:
        if self._nested is not None:
            self._nested.rollback()
        else:
            self._exec(f"ROLLBACK TO SAVEPOINT {self.name}")
            self._exec(f"RELEASE SAVEPOINT {self.name}")
