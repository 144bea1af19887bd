"""R7 (RELIABILITY.md): three engine processes on one database, under load from sender threads,
one of them SIGKILLed again and again and restarted. The R1 invariants hold — every ACKed message
is stored once and applied exactly once, in send order per patient, and the queue drains — and no
ordering key is ever claimed by two processes at once (the ``INTERFACE_CLAIM_TRACE`` hook of
``interface.ops.cluster`` records every claim span; spans of one key from two processes must not
overlap).

The processes are independent ``interface run`` processes, each on its own port, as on separate
machines behind a load balancer; senders fail over to another process and resend what was not
acknowledged. On PostgreSQL (CI sets INTERFACE_TEST_DB_URL) the processes share work through
FOR UPDATE SKIP LOCKED and advisory key locks; on SQLite through its single write lock — the
same invariants are checked on both.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from interface.engine.client import MLLPClient
from interface.ops import cluster
from interface.store import claimtrace
from interface.store.schema import messages, work_attempts, work_items

from .conftest import ROOT

PROCESSES = 3
SENDERS = 4
PATIENTS_PER_SENDER = 6
MAX_ROUNDS = 500  # messages per patient at most (MSH-7 below counts up to 599)
BACKLOG = 200  # senders pause while more work items than this are queued, so the load lasts
# through every kill while the queue left to drain at the end stays small
KILLS = 10  # aimed for; at least 3 even on a very loaded machine
KILL_EVERY = (1.0, 2.5)  # seconds between kills, at random; a killed process restarts meanwhile
DEADLINE = 150  # seconds for the whole run, a hard stop


def _message(mrn: str, seq: int) -> bytes:
    ts = f"202603111{seq // 60:01d}{seq % 60:02d}00"
    event = "A28" if seq == 0 else "A31"
    return (
        f"MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|{ts}||ADT^{event}^ADT_A05|R7-{mrn}-{seq}|P|2.5.1\r"
        f"EVN|{event}|{ts}\r"
        f"PID|1||{mrn}^^^HOSP^MR||TEST^G{seq}^^^^^L||19800101|F\r"
    ).encode()


class Node:
    """One `interface run` process and its port."""

    def __init__(self, index: int, tmp: Path, db_url: str, env: dict):
        self.index, self.tmp, self.db_url, self.env = index, tmp, db_url, env
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.generation = 0
        self.up = threading.Event()

    def start(self) -> None:
        self.generation += 1
        ready = self.tmp / f"ready-{self.index}-{self.generation}.json"
        log = open(self.tmp / f"node-{self.index}-{self.generation}.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "interface.ops.cli",
                "run",
                "--no-web",
                "--channels",
                str(self.tmp / "channels"),
                "--mappings",
                str(ROOT / "mappings"),
                "--db",
                self.db_url,
                "--var",
                str(self.tmp / "var"),
                "--listen",
                "adt=tcp:0:interface=127.0.0.1",
                "--ready-file",
                str(ready),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"node {self.index} exited with {self.proc.returncode}"
            try:
                self.port = json.loads(ready.read_text())["ports"]["adt"]
                self.up.set()
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)  # polling a real subprocess, with a deadline
        raise AssertionError(f"node {self.index} did not start")

    def kill(self) -> int:
        """SIGKILL; returns the monotonic time just before (ends its unreleased claim spans)."""
        self.up.clear()
        t = time.monotonic_ns()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return t

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_r7_three_processes_one_killed_repeatedly(tmp_path, db_url, engine):
    """R7: R1 invariants with three engine processes and repeated SIGKILLs; no key on two processes."""
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text((ROOT / "channels" / "adt.yaml").read_text())
    trace = tmp_path / "claims.trace"
    env = dict(os.environ, INTERFACE_CLAIM_TRACE=str(trace))
    nodes = [Node(i, tmp_path, db_url, env) for i in range(PROCESSES)]
    rng = random.Random(7)
    hard_stop = time.monotonic() + DEADLINE
    deaths: dict[int, int] = {}
    acked: dict[str, int] = {}  # control id -> sender's sequence number for the patient
    rejected: list[tuple[str, str]] = []
    lock = threading.Lock()
    chaos_done = threading.Event()
    room = threading.Event()  # set while the queue is short enough to send more
    room.set()
    try:
        for n in nodes:
            n.start()

        def sender(t: int) -> None:
            patients = [f"R7P{t:02d}{k:02d}" for k in range(PATIENTS_PER_SENDER)]
            client, tries, seq = None, t, 0
            while seq < MAX_ROUNDS and not chaos_done.is_set() and time.monotonic() < hard_stop:
                room.wait(5)
                for mrn in patients:
                    msg, ctl = _message(mrn, seq), f"R7-{mrn}-{seq}"
                    while time.monotonic() < hard_stop:  # resend until acknowledged
                        try:
                            if client is None:
                                node = nodes[tries % PROCESSES]
                                client = MLLPClient("127.0.0.1", node.port, timeout=10).connect()
                            r = client.send(msg)
                        except OSError:
                            r = None
                        if r is not None and r.ok and r.control_id == ctl:
                            with lock:
                                acked[ctl] = seq
                            break
                        if r is not None and r.code in ("AR", "CR"):
                            with lock:
                                rejected.append((ctl, r.text))
                            break
                        if client is not None:
                            client.close()
                        client, tries = None, tries + 1
                seq += 1
            if client is not None:
                client.close()

        def monitor() -> None:
            while not chaos_done.is_set():
                with engine.connect() as conn:
                    queued = conn.execute(
                        select(func.count()).select_from(work_items).where(work_items.c.status == "pending")
                    ).scalar()
                    conn.rollback()
                room.set() if queued < BACKLOG else room.clear()
                chaos_done.wait(0.2)
            room.set()

        threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(SENDERS)]
        threads.append(threading.Thread(target=monitor, daemon=True))
        for th in threads:
            th.start()

        restarts = []
        while len(deaths) < KILLS and time.monotonic() < hard_stop - 60:  # the chaos schedule
            time.sleep(rng.uniform(*KILL_EVERY))
            up = [n for n in nodes if n.up.is_set()]
            if len(up) < 2:  # never fewer than two processes up
                continue
            victim = rng.choice(up)
            deaths[victim.proc.pid] = victim.kill()
            restarts.append(threading.Thread(target=victim.start, daemon=True))
            restarts[-1].start()
        for r in restarts:
            r.join(60)
        assert all(n.up.is_set() for n in nodes) and len(deaths) >= 3, f"only {len(deaths)} kills"
        chaos_done.set()
        for th in threads:
            th.join(max(0.0, hard_stop - time.monotonic()))
        assert not any(th.is_alive() for th in threads), "senders did not finish before the deadline"

        # the queue drains after the last restart
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                left = conn.execute(
                    select(func.count())
                    .select_from(work_items)
                    .where(work_items.c.status.in_(("pending", "held")))
                ).scalar()
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # polling real subprocesses, with a deadline
        assert left == 0, f"{left} work items still queued"
    finally:
        for n in nodes:
            n.stop()

    assert rejected == []
    assert len(acked) >= 10 * SENDERS * PATIENTS_PER_SENDER, f"only {len(acked)} messages: too little load"

    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.id, messages.c.control_id, messages.c.patient_id, messages.c.status).where(
                messages.c.channel == "adt"
            )
        ).all()
        items = conn.execute(select(work_items.c.id, work_items.c.message_id, work_items.c.status)).all()
        done = conn.execute(
            select(work_attempts.c.id, work_attempts.c.item_id).where(work_attempts.c.outcome == "done")
        ).all()

    # stored once: one journal row per acknowledged control id, nothing else
    per_ctl = defaultdict(list)
    for r in rows:
        per_ctl[r.control_id].append(r)
    assert set(per_ctl) == set(acked)
    assert [c for c, rs in per_ctl.items() if len(rs) != 1] == []
    assert {r.status for r in rows} == {"processed"}

    # applied exactly once: one work item per message, done, with exactly one "done" attempt
    item_of_message = {}
    for it in items:
        assert it.message_id not in item_of_message
        item_of_message[it.message_id] = it
    assert {it.status for it in items} == {"done"}
    done_per_item = defaultdict(list)
    for d in done:
        done_per_item[d.item_id].append(d.id)
    assert sorted(done_per_item) == sorted(it.id for it in items)
    assert [i for i, ds in done_per_item.items() if len(ds) != 1] == []

    # order per patient: arrival order (message id) and apply order (done attempt id) = send order
    by_patient = defaultdict(list)
    for r in rows:
        item = item_of_message[r.id]
        by_patient[r.patient_id].append((acked[r.control_id], r.id, done_per_item[item.id][0]))
    assert len(by_patient) == SENDERS * PATIENTS_PER_SENDER
    for mrn, seqs in by_patient.items():
        seqs.sort()
        assert [s[1] for s in seqs] == sorted(s[1] for s in seqs), f"{mrn}: stored out of send order"
        assert [s[2] for s in seqs] == sorted(s[2] for s in seqs), f"{mrn}: applied out of order"

    # the chart shows each patient's last update
    from interface.store.chart_schema import patients

    with engine.connect() as conn:
        given = dict(conn.execute(select(patients.c.mrn, patients.c.given)).all())
    assert {m: given.get(m) for m in by_patient} == {m: f"G{len(seqs) - 1}" for m, seqs in by_patient.items()}

    # no key claimed by two processes at once
    spans = claimtrace.read_trace(trace)
    assert len({s.pid for s in spans}) >= 2  # the work was shared between processes
    assert claimtrace.overlaps(spans, deaths) == []
