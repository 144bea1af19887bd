"""``interface bench --scenarios search``: message search on a journal of 10^6 messages.

The journal is bulk-loaded with one ``INSERT ... SELECT`` (not through MLLP: the search indexes
are filled by their triggers as the rows go in, as in production), ADT messages with varied
senders, statuses, times, patients (a pool of MRNs, some of them merged into others) and an OBX
note holding a common word (one of 5) and a word of its own. Then every kind of search the
console offers (``interface.store.message_search``) is run :data:`REPEAT` times after one warm-up,
one page of 50 newest first as the console asks for, and timed: p50 and max in milliseconds.
Goal: each ≤ 50 ms on SQLite and PostgreSQL.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, insert, text

from interface.store.chart_schema import patients
from interface.store.db import create_schema, make_engine
from interface.store.message_search import Filters, search
from interface.store.schema import TS, messages

REPEAT = 7
POOL = 20_000  # distinct MRNs
MERGED = 3  # MRNs merged into each of the first survivors
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
WORDS = ("fever", "cough", "chest", "pain", "rash")


def _load(engine, n: int) -> dict:
    pg = engine.dialect.name == "postgresql"
    series = "generate_series(1, :n) AS s(g)" if pg else "s"
    cte = "" if pg else "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
    mod = (lambda a, b: f"({a} % {b})") if pg else (lambda a, b: f"({a} % {b})")
    gs = "CAST(g AS TEXT)"
    word = (
        "CASE " + mod("g", 5) + " " + " ".join(f"WHEN {i} THEN '{w}'" for i, w in enumerate(WORDS)) + " END"
    )
    trig = f"CASE {mod('g', 4)} WHEN 0 THEN 'A01' WHEN 1 THEN 'A04' WHEN 2 THEN 'A08' ELSE 'A03' END"
    control = "'SMP' || " + ("lpad(CAST(g AS TEXT), 8, '0')" if pg else "substr('00000000' || g, -8, 8)")
    mrn = f"'M' || CAST({mod('g', POOL)} AS TEXT)"
    body = (
        f"'MSH|^~\\&|APP' || CAST({mod('g', 20)} AS TEXT) || '|FAC' || CAST({mod('g', 3)} AS TEXT) || "
        f"'|EHR|HOSP|20260101120000||ADT^' || {trig} || '|' || {control} || '|P|2.5' || chr(13) || "
        f"'PID|1||' || {mrn} || '^^^HOSP^MR||FAMILY' || CAST({mod('g', 5000)} AS TEXT) || '^GIVEN||19700101|M'"
        f" || chr(13) || 'PV1|1|I|WARD' || CAST({mod('g', 40)} AS TEXT) || '^101^A' || chr(13) || "
        f"'OBX|1|TX|NOTE||' || {word} || ' observed, tok' || {gs} || ' noted'"
    )
    if not pg:
        body = body.replace("chr(13)", "char(13)")
    raw = f"convert_to({body}, 'UTF8')" if pg else f"CAST({body} AS BLOB)"
    status = f"CASE WHEN {mod('g', 100)} = 2 THEN 'error' ELSE 'processed' END"
    at = (
        "CAST(:at AS TIMESTAMPTZ) + g * INTERVAL '1 second'"
        if pg
        else "strftime('%Y-%m-%d %H:%M:%f', :at, '+' || g || ' seconds')"
    )
    sql = text(
        "INSERT INTO messages (channel, received_at, peer, sending_application, sending_facility, "
        "control_id, message_type, version, patient_id, status, raw, body_sha256, ack_code) "
        f"{cte}SELECT 'adt', {at}, 'bench', 'APP' || CAST({mod('g', 20)} AS TEXT), "
        f"'FAC' || CAST({mod('g', 3)} AS TEXT), {control}, 'ADT^' || {trig}, '2.5', {mrn}, {status}, "
        f"{raw}, 'seed', 'AA' FROM {series}"
    )
    if pg:
        sql = sql.bindparams(bindparam("at", type_=TS))
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sql, {"n": n, "at": T0 if pg else T0.strftime("%Y-%m-%d %H:%M:%S")})
        # a few charts with merged MRNs: M0 survives M1..M3, and so on
        rows = []
        for s in range(0, 40, MERGED + 1):
            rows.append({"mrn": f"M{s}", "merged_into": None})
            rows += [{"mrn": f"M{s + k}", "merged_into": f"M{s}"} for k in range(1, MERGED + 1)]
        conn.execute(insert(patients), [{**r, "created_at": T0, "updated_at": T0} for r in rows])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return {"messages": n, "load_seconds": round(time.perf_counter() - t0, 1)}


def _searches(n: int) -> list[tuple[str, Filters]]:
    mid = T0 + timedelta(seconds=n // 2)
    rare = f"tok{n // 3}"
    return [
        ("control id prefix", Filters(control_id=f"smp{n // 2:08d}"[:-1])),
        ("control id exact, lower case", Filters(control_id=f"smp{n // 3:08d}")),
        ("MRN with merged MRNs", Filters(mrn="M0")),
        ("content, rare word", Filters(text=rare)),
        ("content, common word", Filters(text="chest")),
        ("content, two words", Filters(text="chest observed")),
        ("content, prefix", Filters(text=f"tok{n // 7}*")),
        ("date range (1 hour)", Filters(since=mid, until=mid + timedelta(hours=1))),
        ("type and trigger", Filters(type="ADT", trigger="A08")),
        ("trigger only", Filters(trigger="A04")),
        ("status error", Filters(status="error")),
        ("sending application", Filters(sending_application="APP7")),
        ("content + status + facility", Filters(text="chest", status="error", sending_facility="FAC1")),
        ("MRN + content", Filters(mrn="M4", text="rash")),
        (
            "date range + type + sender",
            Filters(since=mid, until=mid + timedelta(days=1), type="ADT^A01", sending_application="APP4"),
        ),
    ]


def run(db_url: str, n: int, log=lambda _t: None) -> dict:
    """Load ``n`` messages into the (empty) database at ``db_url`` and time each search."""
    engine = make_engine(db_url)
    try:
        create_schema(engine)
        log(f"search: loading {n} messages")
        out: dict = {"load": _load(engine, n), "searches": {}}
        log(f"search: loaded in {out['load']['load_seconds']} s")
        cols = [messages.c.id, messages.c.control_id, messages.c.status, messages.c.patient_id]
        for name, f in _searches(n):
            times = []
            with engine.connect() as conn:
                page = search(conn, f, cols, limit=50)  # warm-up
                for _ in range(REPEAT):
                    t0 = time.perf_counter()
                    search(conn, f, cols, limit=50)
                    times.append((time.perf_counter() - t0) * 1000)
                conn.rollback()
            out["searches"][name] = {
                "rows": len(page.rows),
                "p50_ms": round(statistics.median(times), 2),
                "max_ms": round(max(times), 2),
            }
            log(f"search: {name}: {out['searches'][name]}")
        return out
    finally:
        engine.dispose()
