"""``interface bench``: the load benchmark (docs/benchmarks.md).

Runs the engine as a real subprocess (``interface run --no-web`` with its listeners on free
ports, SQLite in a temporary directory unless ``--db`` names a PostgreSQL server, in which case a
fresh database is created and dropped there) and drives it over MLLP from an asyncio client with
1 and 16 connections, one message in flight per connection, as MLLP senders do.

Scenarios, each at every ``--connections`` count:

``receive``  MLLP frame -> journal committed -> ACK (``ack: on_commit``): msgs/s and ACK latency
             p50/p99, with the same messages sent in the same run to two baselines that store
             nothing: python-hl7's asyncio MLLP server (``hl7.mllp``, parses and answers
             ``create_ack()``) and a bare asyncio socket that echoes a canned ACK.
``adt``      receive -> chart committed for a realistic ADT mix (A01/A04/A02/A08/A03, each
             patient's story in order on one connection, thousands of patients): end-to-end
             throughput measured by polling the work queue until every item of the run is done,
             and per-message latency from the send time to the later of the item's
             ``updated_at`` and the ACK's arrival (an item applied inline, ``apply: inline``,
             is committed before its ACK leaves; ``updated_at`` is when its transaction began).
             (``receive`` figures come from this same run: the ACK side of it.)
``mdm``      100 KB MDM^T02 with a base64 PDF in OBX-5, receive -> document index committed:
             documents/s and MB/s, with the same documents sent to the two baselines (python-hl7's
             MB/s and the ratio to it), and the peak RSS of the engine during the run (VmHWM,
             reset first).
``scale``    (PostgreSQL) the ADT mix at 16 connections (the largest ``--connections``) with 1, 2
             and 3 engine processes (``--processes``; ``interface run --workers N``) on one
             database: chart-committed msgs/s and the ratio to the 1-process figure of the same
             run. ``--taskset ENGINE:DB`` runs it once more with the engine under ``taskset -c
             ENGINE`` and the database's backends for the bench database pinned to DB.

Memory, over the whole run: each engine process's peak RSS (VmHWM) and their sum, and, sampled
every 0.1 s, the peak of the summed RSS and of the summed PSS of the engine's process tree
(``bench_peers.MemorySampler``).
``journal``  the ADT mix on a journal pre-seeded (bulk ``INSERT ... SELECT``) to 10^4, 10^5 and
             10^6 stored messages with done work items, each size with few and many distinct
             patients in the run (100 and 10,000): msgs/s, ACK p50/p99, ratios to the smallest size.
``fhir``     FHIR reads and searches on 10^5 bulk-loaded patients (``--fhir-patients``) in a
             database of their own, served in this process: p50/p95 (``interface.ops.bench_fhir``).
``search``   message search on a journal bulk-loaded to 10^6 messages (``--scale`` multiplies it;
             ``--quick``: 2,000): p50 and max of each kind of search (``interface.ops.bench_search``).
``queue``    (largest connection count) processing throughput of a backlog (the engine is killed
             after the last ACK and restarted; the drain of what was left is timed), and the
             end-to-end latency of other patients while one patient is blocked by a poison
             message, against the same run without poison.

Nothing here asserts timings; ``tests/test_bench.py`` runs ``--quick`` and checks counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from interface.ops import bench_fhir, bench_search
from interface.ops.bench_figures import Probe, ack_figures, e2e_figures, fsync_ms, sizes
from interface.ops.bench_peers import (
    MemorySampler,
    Proc,
    SendResult,
    _serve_baseline,
    cpu_seconds,
    peak_rss_mb,
    pin,
    process_memory,
    reset_peak_rss,
    send_all,
)
from interface.ops.bench_report import table
from interface.ops.bench_workload import EB, LOAD_TOOL, MIXES, ROOT, SB, Workload, adt, adt_mix, mdm_t02


def _adt_cell(ack: dict, e2e: dict) -> dict:
    """One cell of the scale / journal tables: the ADT run's ACK and chart-committed figures."""
    return {
        "chart_msgs_per_s": e2e["msgs_per_s"],
        "ack_msgs_per_s": ack["msgs_per_s"],
        "ack_p50_ms": ack["ack_p50_ms"],
        "ack_p99_ms": ack["ack_p99_ms"],
        "e2e_p50_ms": e2e["e2e_p50_ms"],
        "e2e_p99_ms": e2e["e2e_p99_ms"],
        "engine_cpu_ms_per_msg": e2e["engine_cpu_ms_per_msg"],
        "messages": ack["messages"],
        "done": e2e["done"],
        "items": e2e["items"],
        "ack_codes": ack["ack_codes"],
        "mismatched": ack["mismatched"],
        "load_avg": os.getloadavg(),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="interface-bench-"))
        self.results: dict = {"scenarios": {}, "conditions": {}}
        self.pg_admin = None
        self.pg_names: list[str] = []
        self.db_url = None
        self.engine: Proc | None = None
        self.probe: Probe | None = None
        self.memory: MemorySampler | None = None
        self.seq = 0

    # set-up ------------------------------------------------------------------------------------

    def database(self, suffix: str = "") -> str:
        if not self.args.db:
            return f"sqlite:///{self.tmp / 'var' / f'interface.store{suffix}.db'}"
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = self.args.db
        admin_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.pg_admin = self.pg_admin or create_engine(
            admin_url, isolation_level="AUTOCOMMIT", hide_parameters=True
        )
        name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}{suffix}"
        self.pg_names.append(name)
        with self.pg_admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        return make_url(url).set(database=name).render_as_string(hide_password=False)

    def start_engine(self, workers: int | None = None, cpus: str | None = None) -> Proc:
        """``interface run`` on free ports; ``cpus`` (e.g. ``"0"``): under ``taskset -c``."""
        workers = self.args.engine_workers if workers is None else workers
        ready = self.tmp / "engine-ready.json"
        root = Path(self.args.engine_root).resolve() if self.args.engine_root else ROOT
        cmd = [
            sys.executable,
            "-c",
            "import sys; from interface.ops.cli import main; sys.exit(main())",
            "run",
            "--var",
            str(self.tmp / "var"),
            "--no-web",
            "--db",
            self.db_url,
            "--channels",
            str(root / "channels"),
            "--mappings",
            str(root / "mappings"),
            "--listen",
            "adt=tcp:0:interface=127.0.0.1",
            "--listen",
            "mdm=tcp:0:interface=127.0.0.1",
            "--listen",  # not measured, but on a free port too: its default may be taken on a shared machine
            "siu=tcp:0:interface=127.0.0.1",
            "--ready-file",
            str(ready),
        ]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        if cpus:
            cmd = ["taskset", "-c", cpus, *cmd]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(root))
        if not self.args.db:
            env.pop("INTERFACE_DB_URL", None)
        return Proc(cmd, ready, self.tmp / "engine.log", env=env, cwd=root)

    def start_baseline(self, kind: str) -> Proc:
        ready = self.tmp / f"baseline-{kind}.json"
        return Proc(
            [sys.executable, "-m", "interface.ops.bench", "--baseline-server", kind, ready.as_posix()],
            ready,
            self.tmp / f"baseline-{kind}.log",
        )

    def tag(self) -> str:
        self.seq += 1
        return f"B{self.seq:02d}{uuid.uuid4().hex[:3].upper()}"

    # scenarios ---------------------------------------------------------------------------------

    def adt_run(
        self, conns: int, n: int, *, poison: bool = False, pool: int | None = None
    ) -> tuple[dict, dict, Workload, SendResult]:
        tag = self.tag()
        poison_mrn = f"{tag}POISON" if poison else None
        wl = adt_mix(n, conns, tag, seed=self.seq, poison_mrn=poison_mrn, pool=pool, mix=self.args.mix)
        base = self.probe.max_message_id()
        port = self.engine.info["ports"]["adt"]
        cpu0 = cpu_seconds(self.engine.pid)
        t0 = time.time()
        res = send_all(port, wl.per_conn)
        cpu_ack = cpu_seconds(self.engine.pid) - cpu0
        expected = sum(1 for m in wl.mrn_of.values() if m != poison_mrn)
        drained = self.probe.wait_done(base, expected, exclude_key=f"mrn:{poison_mrn}" if poison else None)
        done = self.probe.done_times(base)
        counts = self.probe.status_counts(base)
        only = {c for c, m in wl.mrn_of.items() if m != poison_mrn} if poison else None
        e2e = e2e_figures(res, done, drained, t0, only)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        e2e["items"] = counts
        e2e["patients"] = wl.patients
        e2e["mix"] = wl.types()
        e2e["engine_cpu_ms_per_msg"] = round(cpu * 1000 / max(res.count, 1), 2)
        ack = ack_figures(res)
        ack["engine_cpu_share"] = round(cpu_ack / res.elapsed, 2)
        return ack, e2e, wl, res

    def baseline_run(self, proc: Proc, wl: Workload) -> dict:
        res = send_all(proc.info["port"], wl.per_conn)
        return ack_figures(res)

    def mdm_run(self, conns: int, n: int, baselines: dict | None = None) -> dict:
        tag = self.tag()
        rng = random.Random(self.seq)
        patients = max(conns, n // 2)
        # the patients exist first (a document for an unknown patient waits for its ADT)
        reg = [[] for _ in range(conns)]
        for i in range(patients):
            cid = f"{tag}R{i:07d}"
            reg[i % conns].append(
                (
                    cid,
                    SB
                    + adt(
                        "A04", f"{tag}{i:06d}", cid, time.time() - 3600, visit=f"V{tag}{i:06d}", klass="O"
                    ).encode()
                    + EB,
                )
            )
        base = self.probe.max_message_id()
        send_all(self.engine.info["ports"]["adt"], reg)
        self.probe.wait_done(base, patients)
        per_conn = [[] for _ in range(conns)]
        for i in range(n):
            cid = f"{tag}D{i:07d}"
            mrn = f"{tag}{i % patients:06d}"
            per_conn[i % conns].append((cid, mdm_t02(mrn, f"DOC-{tag}-{i}", cid, time.time(), rng)))
        size = sum(len(m) for c in per_conn for _, m in c) / n
        base = self.probe.max_message_id()
        reset_peak_rss(self.engine.pid)
        rss_before = peak_rss_mb(self.engine.pid)
        cpu0 = cpu_seconds(self.engine.pid)
        t0 = time.time()
        res = send_all(self.engine.info["ports"]["mdm"], per_conn)
        drained = self.probe.wait_done(base, n)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        done = self.probe.done_times(base)
        e2e = e2e_figures(res, done, drained, t0)
        mb = lambda per_s: round(per_s * size / 1e6, 1) if per_s else None  # noqa: E731
        out = {
            "message_kb": round(size / 1024, 1),
            **ack_figures(res),
            **{f"index_{k}": v for k, v in e2e.items()},
            "index_mb_per_s": mb(e2e["msgs_per_s"]),
            "items": self.probe.status_counts(base),
            "rss_start_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak_rss_mb(self.engine.pid), 1),
            "engine_cpu_ms_per_msg": round(cpu * 1000 / n, 2),
        }
        for kind, proc in (baselines or {}).items():  # the same documents, stored nowhere
            b = ack_figures(send_all(proc.info["port"], per_conn))
            out[kind] = {
                "msgs_per_s": b["msgs_per_s"],
                "mb_per_s": mb(b["msgs_per_s"]),
                "ack_p50_ms": b["ack_p50_ms"],
            }
        if "python-hl7" in out and out["python-hl7"]["msgs_per_s"]:
            out["index_ratio_vs_python_hl7"] = round(e2e["msgs_per_s"] / out["python-hl7"]["msgs_per_s"], 3)
        return out

    def backlog_run(self, conns: int, n: int) -> dict:
        """Processing alone: stop the engine, journal a backlog with ``Engine.receive_many`` (what
        the listeners do, in this process, groups of 100, no workers running), restart the engine
        and time the drain from its ready file to the last item done."""
        from interface.config.channels import load_channels
        from interface.engine.inbound import Engine
        from interface.engine.outcome import Inbound
        from interface.store import db as dbmod

        tag = self.tag()
        wl = adt_mix(n, conns, tag, seed=self.seq, mix=self.args.mix)
        base = self.probe.max_message_id()
        self.engine.stop()
        root = Path(self.args.engine_root).resolve() if self.args.engine_root else ROOT
        channel = next(c for c in load_channels(root / "channels") if c.name == "adt")
        db = dbmod.make_engine(self.db_url)
        frames = [f[1:-2] for msgs in zip(*wl.per_conn) for _, f in msgs] + [
            f[1:-2] for msgs in wl.per_conn for _, f in msgs[min(len(m) for m in wl.per_conn) :]
        ]
        t_fill = time.perf_counter()
        eng = Engine(db)
        for i in range(0, len(frames), 100):
            eng.receive_many([Inbound(channel, f, "bench") for f in frames[i : i + 100]])
        fill_s = time.perf_counter() - t_fill
        db.dispose()
        left = sum(v for k, v in self.probe.status_counts(base).items() if k in ("pending", "held"))
        t0 = time.time()
        self.engine = self.start_engine()
        t_ready = time.time()
        cpu0 = cpu_seconds(self.engine.pid)
        drained = self.probe.wait_done(base, wl.count)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        counts = self.probe.status_counts(base)
        span = drained - t_ready
        return {
            "messages": wl.count,
            "journal_fill_msgs_per_s": round(len(frames) / fill_s, 1),
            "backlog": left,
            "restart_s": round(t_ready - t0, 2),
            "drain_s": round(span, 3),
            "drain_items_per_s": round(left / span, 1) if span > 0 else None,
            "items": counts,
            "engine_cpu_ms_per_item": round(cpu * 1000 / max(left, 1), 2),
        }

    def pin_database(self, cpus: set[int]) -> int:
        """Pin the database server's backends serving the bench database to ``cpus`` (PostgreSQL:
        ``pg_stat_activity``; the server's own background processes are left as they are). On
        SQLite the database is the engine's own library: nothing to pin, 0."""
        if not self.db_url.startswith("postgresql"):
            return 0
        pids = [
            r[0]
            for r in self.probe.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ]
        return len(pin(pids, cpus))

    def scale_run(
        self, conns: int, n: int, warmup: int, processes=(1, 2, 3), cpus: tuple[str, str] | None = None
    ) -> dict:
        """The ADT mix at ``conns`` connections against 1, 2, 3 engine processes on one database
        (each started afresh, warmed up, then measured); ratios to the 1-process figure. With
        ``cpus`` (engine CPUs, database CPUs, as ``taskset -c`` spells them): the engine under
        ``taskset`` and the database's backends for the run pinned to the others (re-pinned
        after the warm-up, so the connections the engine opened are included)."""
        out: dict = {"connections": conns, "processes": {}}
        if cpus:
            out["taskset"] = {"engine": cpus[0], "database": cpus[1]}
        for w in processes:
            self.engine.stop()
            self.engine = self.start_engine(workers=w, cpus=cpus[0] if cpus else None)
            self.adt_run(min(conns, 4), warmup)
            if cpus:
                out["processes"].setdefault(w, {})["backends_pinned"] = self.pin_database(_cpu_set(cpus[1]))
            ack, e2e, _, _ = self.adt_run(conns, n)
            out["processes"].setdefault(w, {}).update(_adt_cell(ack, e2e))
            self.log(f"scale {w} process(es){' pinned' if cpus else ''}: chart {e2e['msgs_per_s']}/s")
        one = out["processes"][processes[0]]["chart_msgs_per_s"]
        for r in out["processes"].values():
            r["ratio_vs_1"] = round(r["chart_msgs_per_s"] / one, 2) if one else None
        self.engine.stop()
        self.engine = self.start_engine()
        return out

    def seed_journal(self, target: int, pool: int = 10000) -> dict:
        """Bring the journal to ``target`` stored messages with bulk ``INSERT ... SELECT`` (one
        statement for ``messages``, one for their done ``work_items``): ADT header columns, a
        ~1 KB raw message, status processed, AA, a unique dedup key, patient ids over ``pool``
        patients. Chart rows are not seeded. Returns rows added and seconds taken."""
        from sqlalchemy import bindparam, text

        from interface.store.schema import TS

        have = self.probe.scalar("SELECT COUNT(*) FROM messages") or 0
        n = target - have
        if n <= 0:
            return {"added": 0, "seconds": 0.0, "messages": have}
        pg = self.db_url.startswith("postgresql")
        tag = self.tag()
        raw = adt("A08", "SEED000000", f"{tag}0", time.time(), visit="VSEED").encode()
        series = "generate_series(1, :n) AS s(g)" if pg else "s"
        cte = "" if pg else "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
        ev = (
            "CASE (g - 5 * (g / 5)) WHEN 0 THEN 'ADT^A01' WHEN 1 THEN 'ADT^A04' WHEN 2 THEN 'ADT^A08' "
            "WHEN 3 THEN 'ADT^A02' ELSE 'ADT^A03' END"
        )
        ins = text(
            "INSERT INTO messages (channel, received_at, peer, sending_application, sending_facility, "
            "receiving_application, receiving_facility, control_id, message_type, structure, version, "
            "message_time, patient_id, status, raw, body_sha256, ack_code, dedup_key) "
            f"{cte}SELECT 'adt', :at, '127.0.0.1', 'SEED', 'HOSP', 'INTERFACE', 'HOSP', :tag || CAST(g AS TEXT), "
            f"{ev}, 'ADT_A01', '2.5.1', '20240101120000', 'SEED' || CAST((g - :pool * (g / :pool)) AS TEXT), "
            "'processed', :raw, 'seed' || :tag || CAST(g AS TEXT), 'AA', "
            f"'adt|SEED|HOSP|' || :tag || CAST(g AS TEXT) FROM {series}"
        ).bindparams(bindparam("at", type_=TS))
        items = text(
            "INSERT INTO work_items (message_id, channel, destination, key, status, attempts, "
            "next_attempt_at, created_at, updated_at) SELECT id, 'adt', 'chart', 'mrn:' || patient_id, "
            "'done', 1, :at, :at, :at FROM messages WHERE id > :base"
        ).bindparams(bindparam("at", type_=TS))
        at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        base = self.probe.max_message_id()
        with self.probe.engine.begin() as c:
            c.execute(ins, {"n": n, "at": at, "tag": tag, "pool": pool, "raw": raw})
            c.execute(items, {"at": at, "base": base})
        if pg:
            with self.probe.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("ANALYZE messages"))
                c.execute(text("ANALYZE work_items"))
        out = {
            "added": n,
            "seconds": round(time.perf_counter() - t0, 1),
            "messages": self.probe.scalar("SELECT COUNT(*) FROM messages"),
        }
        if pg:
            out["database_mb"] = round(
                self.probe.scalar("SELECT pg_database_size(current_database())") / 2**20
            )
        return out

    def journal_run(self, conns: int, n: int, sizes_: list[int], pools: list[int]) -> dict:
        """For each journal size (ascending): seed up to it, then the ADT mix over few and over
        many distinct patients; msgs/s and ACK p50/p99, with ratios to the smallest size."""
        out: dict = {"connections": conns, "messages_per_run": n, "sizes": {}}
        for size in sorted(sizes_):
            seed = self.seed_journal(size)
            self.log(f"journal seeded to {seed['messages']} (+{seed['added']} in {seed['seconds']} s)")
            row: dict = {"seed": seed, "pools": {}}
            for pool in pools:
                ack, e2e, wl, _ = self.adt_run(conns, n, pool=pool)
                row["pools"][pool] = {"patients": wl.patients, **_adt_cell(ack, e2e)}
                self.log(
                    f"journal {size} pool {pool}: chart {e2e['msgs_per_s']}/s, "
                    f"ack p50/p99 {ack['ack_p50_ms']}/{ack['ack_p99_ms']} ms"
                )
            row["stored_after"] = self.probe.scalar("SELECT COUNT(*) FROM messages")
            out["sizes"][size] = row
        first = out["sizes"][min(sizes_)]["pools"]
        for row in out["sizes"].values():
            for pool, r in row["pools"].items():
                f = first[pool]
                r["ratio_vs_smallest"] = {
                    "throughput": round(r["chart_msgs_per_s"] / f["chart_msgs_per_s"], 2),
                    "ack_p50": round(r["ack_p50_ms"] / f["ack_p50_ms"], 2) if f["ack_p50_ms"] else None,
                    "ack_p99": round(r["ack_p99_ms"] / f["ack_p99_ms"], 2) if f["ack_p99_ms"] else None,
                }
        return out

    def cross_check(self, conns: int, n: int, port: int, name: str) -> dict | None:
        if not LOAD_TOOL.exists() or self.args.no_cross_check:
            return None
        out = self.tmp / f"mllp_load-{name}-{conns}.json"
        cmd = [
            sys.executable,
            str(LOAD_TOOL),
            "--port",
            str(port),
            "-c",
            str(conns),
            "-n",
            str(n),
            "--synthetic",
            "adt_a01",
            "--allow-nack",
            "-q",
            "--json",
            str(out),
        ]
        p = subprocess.run(cmd, capture_output=True, timeout=600)
        if not out.exists():
            return {"error": p.stderr.decode(errors="replace")[-300:]}
        doc = json.loads(out.read_text())
        lat = doc.get("latency_ms", {})
        counts = doc.get("counts", {})
        return {
            "msgs_per_s": doc.get("throughput_msg_s"),
            "ack_p50_ms": lat.get("p50"),
            "ack_p99_ms": lat.get("p99"),
            "ok": counts.get("ok"),
            "sent": counts.get("sent"),
            "client_cpu_pct": doc.get("client_cpu_pct"),
        }

    # driver ------------------------------------------------------------------------------------

    def run(self) -> dict:
        a = self.args
        conns = [int(c) for c in a.connections.split(",")]
        sz = sizes(a.quick, conns, a.scale)
        scen = set(a.scenarios.split(","))
        R = self.results
        R["conditions"] = {
            "command": "interface bench " + " ".join(a.argv),
            "scale": a.scale,
            "quick": a.quick,
            "database": "postgresql" if a.db else "sqlite",
            "cpus": os.cpu_count(),
            "load_avg_start": os.getloadavg(),
            "python": sys.version.split()[0],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "engine_processes": a.engine_workers or (os.cpu_count() or 1),
            "engine_root": a.engine_root or str(ROOT),
            "adt_mix": a.mix,
        }
        baselines = {}
        try:
            (self.tmp / "var").mkdir(exist_ok=True)
            if "fhir" in scen:  # first, in a database of its own, before the engine runs
                n = a.fhir_patients or (2000 if a.quick else 100000)
                reqs = a.fhir_requests or (50 if a.quick else 500)
                R["scenarios"]["fhir"] = bench_fhir.run(self.database("_fhir"), self.tmp, n, reqs, self.log)
            if "search" in scen:  # in a database of its own too, without an engine running
                R["scenarios"]["search"] = bench_search.run(self.database("_search"), sz.search, self.log)
            if not scen - {"fhir", "search"}:
                return R
            self.db_url = self.database()
            self.engine = self.start_engine()
            self.probe = Probe(self.db_url)
            self.memory = MemorySampler(lambda: self.engine.pid if self.engine is not None else None).start()
            if {"receive", "adt", "mdm"} & scen:
                for kind in ("python-hl7", "socket"):
                    baselines[kind] = self.start_baseline(kind)
            # warm-up: the first messages pay for lazy imports and compiled mappings
            self.adt_run(min(conns[-1], 4), sz.warmup)
            R["conditions"]["load_avg_after_warmup"] = os.getloadavg()
            if not a.db:  # one durable commit's floor, on the database's disk, in this run
                R["conditions"]["fsync"] = fsync_ms(self.tmp / "var")
            for c in conns:
                if {"receive", "adt"} & scen:
                    ack, e2e, wl, _ = self.adt_run(c, sz.adt[c])
                    rec = {"engine": ack}
                    for kind, proc in baselines.items():
                        rec[kind] = self.baseline_run(proc, wl)
                    base = rec["python-hl7"]
                    rec["ratio_vs_python_hl7"] = {
                        "throughput": round(ack["msgs_per_s"] / base["msgs_per_s"], 3),
                        "ack_p50": round(ack["ack_p50_ms"] / base["ack_p50_ms"], 2)
                        if base["ack_p50_ms"]
                        else None,
                        "ack_p99": round(ack["ack_p99_ms"] / base["ack_p99_ms"], 2)
                        if base["ack_p99_ms"]
                        else None,
                    }
                    R["scenarios"].setdefault("receive", {})[c] = rec
                    R["scenarios"].setdefault("adt", {})[c] = e2e
                    self.log(f"adt c={c}: ack {ack['msgs_per_s']}/s, chart {e2e['msgs_per_s']}/s")
                if "mdm" in scen:
                    m = R["scenarios"].setdefault("mdm", {})[c] = self.mdm_run(c, sz.mdm[c], baselines)
                    self.log(f"mdm c={c}: {m['index_msgs_per_s']}/s = {m['index_mb_per_s']} MB/s")
            if "queue" in scen:
                c = conns[-1]
                n = sz.adt[c] // 2
                _, clean, _, _ = self.adt_run(c, n)
                _, poisoned, wl, _ = self.adt_run(c, n, poison=True)
                poisoned["blocked_patient_items"] = self.probe.scalar(
                    "SELECT COUNT(*) FROM work_items WHERE key = :k AND status IN ('pending', 'error')",
                    k=f"mrn:{next(m for m in wl.mrn_of.values() if m.endswith('POISON'))}",
                )
                q = {
                    "connections": c,
                    "without_poison": clean,
                    "with_poison": poisoned,
                    "other_patients_p50_ratio": round(poisoned["e2e_p50_ms"] / clean["e2e_p50_ms"], 2),
                    "other_patients_p99_ratio": round(poisoned["e2e_p99_ms"] / clean["e2e_p99_ms"], 2),
                }
                q["backlog"] = self.backlog_run(c, sz.backlog)
                R["scenarios"]["queue"] = q
                self.log(f"queue: drain {q['backlog']['drain_items_per_s']}/s")
            if "scale" in scen:
                c = conns[-1]
                procs = tuple(int(w) for w in a.processes.split(","))
                R["scenarios"]["scale"] = self.scale_run(c, sz.scale, sz.warmup, procs)
                if a.taskset:
                    eng_cpus, _, db_cpus = a.taskset.partition(":")
                    R["scenarios"]["scale_pinned"] = self.scale_run(
                        c, sz.scale, sz.warmup, procs, cpus=(eng_cpus, db_cpus)
                    )
            if "journal" in scen:
                c = conns[-1]
                js = [
                    int(v)
                    for v in (a.journal_sizes or ("200,1000" if a.quick else "10000,100000,1000000")).split(
                        ","
                    )
                ]
                pools = [int(v) for v in (a.patients or ("5,50" if a.quick else "100,10000")).split(",")]
                R["scenarios"]["journal"] = self.journal_run(c, sz.journal, js, pools)
            if not a.no_cross_check and LOAD_TOOL.exists() and {"receive", "adt"} & scen:
                c = conns[-1]
                n = 100 if a.quick else 5000
                R["cross_check"] = {
                    "tool": str(LOAD_TOOL),
                    "connections": c,
                    "messages": n,
                    "engine": self.cross_check(c, n, self.engine.info["ports"]["adt"], "engine"),
                    "python-hl7": self.cross_check(c, n, baselines["python-hl7"].info["port"], "hl7"),
                }
        finally:
            if self.engine is not None:
                R["engine_peak_rss_mb"] = round(peak_rss_mb(self.engine.pid), 1)
                R["engine_processes"] = process_memory(self.engine.pid)
                self.engine.stop()
            if self.memory is not None:
                R["engine_memory"] = self.memory.stop()
            for p in baselines.values():
                p.stop()
            R["conditions"]["load_avg_end"] = os.getloadavg()
            if "fsync" in R["conditions"] and (self.tmp / "var").is_dir():
                R["conditions"]["fsync_end"] = fsync_ms(self.tmp / "var")
            if self.probe is not None:
                self.probe.close()
            if self.pg_admin is not None:
                from sqlalchemy import text

                for name in self.pg_names:
                    with self.pg_admin.connect() as c:
                        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                self.pg_admin.dispose()
            if not a.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                R["conditions"]["kept"] = str(self.tmp)
        return R

    def log(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="interface bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts (well under a minute): a smoke run")
    p.add_argument("--db", help="PostgreSQL server URL: a fresh database is created there and dropped after")
    p.add_argument(
        "--var", help=argparse.SUPPRESS
    )  # accepted for `interface` symmetry; bench uses a temp dir
    p.add_argument("--scale", type=float, default=1.0, help="multiply every message count (e.g. 0.5, 3)")
    p.add_argument("--connections", default="1,16", help="comma-separated connection counts (default 1,16)")
    p.add_argument(
        "--scenarios",
        default="receive,adt,mdm,queue",
        help="comma-separated subset of receive,adt,mdm,queue,scale,journal,fhir,search (receive and adt "
        "share a run; scale and journal are meant for --db postgresql://...)",
    )
    p.add_argument("--scenario", dest="scenarios", help="alias of --scenarios")
    p.add_argument("--processes", default="1,2,3", help="engine process counts for the scale scenario")
    p.add_argument(
        "--taskset",
        metavar="ENGINE:DB",
        help="the scale scenario once more with the engine under `taskset -c ENGINE` and the "
        "database's backends pinned to DB (e.g. 0:1): the database on cores of its own",
    )
    p.add_argument(
        "--fhir-patients", type=int, help="patients to bulk-load for the fhir scenario (100000; --quick 2000)"
    )
    p.add_argument(
        "--fhir-requests", type=int, help="timed requests of each kind in the fhir scenario (500; --quick 50)"
    )
    p.add_argument(
        "--journal-sizes",
        help="stored messages to seed for the journal scenario "
        "(default 10000,100000,1000000; --quick 200,1000)",
    )
    p.add_argument(
        "--patients",
        help="distinct patients per run in the journal scenario (default 100,10000; --quick 5,50)",
    )
    p.add_argument(
        "--engine-workers",
        type=int,
        default=0,
        help="passed to `interface run --workers` (default 0: one engine process per core)",
    )
    p.add_argument(
        "--mix",
        choices=MIXES,
        default="realistic",
        help="ADT mix: realistic (admit time, diagnosis and bed kept per visit; default) or churn "
        "(every message rewrites them: the mix of figures before 2026-11-24)",
    )
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument(
        "--engine-root",
        help="run the engine from this source tree (e.g. `git archive COMMIT | "
        "tar -x -C DIR`): before/after figures with the same client and baselines",
    )
    p.add_argument("--no-cross-check", action="store_true", help=f"skip the {LOAD_TOOL.name} cross-check")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (engine log, database)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--baseline-server", nargs=2, metavar=("KIND", "READY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_server:
        _serve_baseline(*args.baseline_server)
        return 0
    args.argv = argv
    R = Bench(args).run()
    print(table(R))
    if args.json:
        Path(args.json).write_text(json.dumps(R, indent=2, default=str))
    bad = [
        c
        for c, r in R["scenarios"].get("receive", {}).items()
        if r["engine"]["mismatched"] or set(r["engine"]["ack_codes"]) - {"AA", "CA"}
    ]
    return 1 if bad else 0


def _cpu_set(spec: str) -> set[int]:
    """``taskset -c`` syntax (``0``, ``0,2``, ``1-3``) as a set of CPU numbers."""
    out: set[int] = set()
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


if __name__ == "__main__":
    sys.exit(main())
