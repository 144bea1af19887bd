"""The ``fhir`` bench scenario: FHIR reads and searches against a chart store of N patients.

The chart tables are bulk-loaded directly (``INSERT`` of generated rows, no messages: loading
10^5 patients through the engine would take the whole run), each patient with an MRN
identifier, a name, a birth date, sex, one phone, one address and one visit with its location.
The console runs in this process (``web.app.WebThread``, uvicorn on loopback) and is driven
over one keep-alive HTTP connection with a scoped API token, one request in flight:

* ``patient_read``: ``GET /fhir/Patient/<random MRN>``;
* ``patient_search``: ``GET /fhir/Patient?family=<one of the surnames>&_count=20`` (about N/500
  matches each; total counted, first page built);
* ``encounter_search``: ``GET /fhir/Encounter?patient=<random MRN>``.

Every request writes its audit row(s), as in production. Latencies are client-side wall time per
request, in milliseconds (p50, p95, max), and the CPU time of this process (server and client
together) per request: on a shared machine the wall time is mostly waiting for a core. Nothing
here asserts timings.
"""

from __future__ import annotations

import http.client
import random
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, text

from interface.desk import users
from interface.ops.bench_figures import pct
from interface.store import chart_schema as cs
from interface.store.db import create_schema, make_engine
from interface.web.app import WebThread, create_app

FAMILIES = [
    f"{a}{b}{c}" for a in "BCDFGHKLMNPRSTVW" for b in ("ar", "el", "in", "or", "us") for c in "dklmnrst"
][:500]
GIVEN = ["ANA", "WEI", "LINH", "JOHN", "MARIA", "OMAR", "SARA", "IVAN", "LUCA", "NOOR"]
CHUNK = 5000


def load(engine, n: int, seed: int = 7) -> list[str]:
    """N patients with their identifier, phone, address and one visit (with its location row);
    returns the MRNs."""
    rnd = random.Random(seed)
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    mrns = [f"B{i:07d}" for i in range(1, n + 1)]
    with engine.begin() as conn:
        for start in range(0, n, CHUNK):
            ids = range(start + 1, min(n, start + CHUNK) + 1)
            stamp = {"message_id": 1, "updated_at": now}
            conn.execute(
                insert(cs.patients),
                [
                    {
                        "id": i,
                        "mrn": mrns[i - 1],
                        "family": rnd.choice(FAMILIES),
                        "given": rnd.choice(GIVEN),
                        "birth_date": f"{rnd.randint(1930, 2020)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                        "sex": rnd.choice("FM"),
                        "created_at": now,
                        **stamp,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(cs.patient_identifiers),
                [
                    {"patient_id": i, "value": mrns[i - 1], "authority": "HOSP", "type": "MR", **stamp}
                    for i in ids
                ],
            )
            conn.execute(
                insert(cs.patient_phones),
                [
                    {
                        "patient_id": i,
                        "seq": 0,
                        "number": f"555{i:07d}",
                        "use": "PRN",
                        "source": "phones",
                        **stamp,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(cs.patient_addresses),
                [
                    {
                        "patient_id": i,
                        "seq": 0,
                        "street": f"{i} MAIN ST",
                        "city": "SPRINGFIELD",
                        "type": "H",
                        **stamp,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(cs.visits),
                [
                    {
                        "id": i,
                        "patient_id": i,
                        "visit_number": f"V{i:07d}",
                        "visit_authority": "HOSP",
                        "class": "inpatient",
                        "status": "admitted",
                        "location": "W1^101^A^HOSP",
                        "admitted_at": "2026-11-30T08:00:00",
                        "created_at": now,
                        **stamp,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(cs.visit_locations),
                [
                    {"visit_id": i, "location": "W1^101^A^HOSP", "from_at": "2026-11-30T08:00:00", **stamp}
                    for i in ids
                ],
            )
        users.add_user(conn, "benchclerk", "clerk", "bench-password-not-used-1", now=now)
    # statistics, as autovacuum (PostgreSQL) or a site's periodic ANALYZE would have them on a
    # database that grew to this size: without them PostgreSQL plans for empty tables (a
    # patient by MRN through the name index, 4-6 ms; visits by walking their primary key, 14 ms)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return mrns


def _figures(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {
        "requests": len(samples),
        "p50_ms": round(pct(samples, 50), 2),
        "p95_ms": round(pct(samples, 95), 2),
        "max_ms": round(samples[-1], 2),
    }


def run(db_url: str, tmp: Path, patients: int, requests: int, log=lambda text: None) -> dict:
    """Load ``patients``, serve, and time ``requests`` of each kind (after a short warm-up)."""
    engine = make_engine(db_url)
    create_schema(engine)
    t0 = time.perf_counter()
    mrns = load(engine, patients)
    load_s = time.perf_counter() - t0
    log(f"fhir: {patients} patients loaded in {load_s:.1f}s")
    with engine.begin() as conn:
        token = users.new_token(conn, "benchclerk", scopes="user/*.read")
    app = create_app(engine, channels=[])
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    rnd = random.Random(11)
    out: dict = {"patients": patients, "load_s": round(load_s, 1)}
    try:
        http_conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}

        def timed(path: str) -> float:
            start = time.perf_counter()
            http_conn.request("GET", path, headers=headers)
            resp = http_conn.getresponse()
            body = resp.read()
            took = (time.perf_counter() - start) * 1000
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status} {body[:200]!r}")
            return took

        kinds = {
            "patient_read": lambda: f"/fhir/Patient/{rnd.choice(mrns)}",
            "patient_search": lambda: f"/fhir/Patient?family={rnd.choice(FAMILIES).lower()[:4]}&_count=20",
            "encounter_search": lambda: f"/fhir/Encounter?patient={rnd.choice(mrns)}",
        }
        for make in kinds.values():  # warm-up: imports, statement caches, the first connection
            for _ in range(min(20, requests)):
                timed(make())
        for name, make in kinds.items():
            cpu = time.process_time()
            out[name] = _figures([timed(make()) for _ in range(requests)])
            out[name]["cpu_ms_per_request"] = round((time.process_time() - cpu) * 1000 / requests, 2)
            log(f"fhir {name}: p50 {out[name]['p50_ms']} ms, p95 {out[name]['p95_ms']} ms")
        http_conn.close()
    finally:
        web.stop()
        engine.dispose()
    return out
