"""Reliability tests R1-R6 of RELIABILITY.md, short forms (``make soak``: SOAK=1, long forms).

Each runs on SQLite and, with INTERFACE_TEST_DB_URL set, on PostgreSQL. The real engine runs as
a subprocess (tests/reliability_kit.py) except R4, which drives Engine + Worker in-process.
What each test proves and its pass figures: docs/reliability.md.
"""

from __future__ import annotations

import os
import random

import pytest
from sqlalchemy import func

from interface.store.db import make_engine

from .reliability_kit import (
    EngineProcess,
    Progress,
    build_workload,
    check_history,
    given_changes,
    join_senders,
    run_senders,
    stop_senders,
    table_counts,
    wait_drained,
)

SOAK = os.environ.get("SOAK") == "1"
SEED = int(os.environ.get("RELIABILITY_SEED", "20261123"))


@pytest.fixture
def checkdb(db_url):
    """The database the engine subprocess writes, opened by the test for the checker."""
    engines = []

    def open_():
        eng = make_engine(db_url)
        engines.append(eng)
        return eng

    yield open_
    for e in engines:
        e.dispose()


def _figures(name: str, report) -> None:
    print(f"\n{name}: {report.figures}")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-processes"])
def test_r1_crash_under_load(db_url, checkdb, tmp_path, workers):
    """R1: SIGKILL the engine at random moments under load; senders resend what was not ACKed.
    0 ACKed messages missing, 0 effects twice, per-patient apply order = send order, drained.
    Also with ``--workers 2`` (the throughput setting): two engine processes sharing the
    database and its write lock, the journal writers gathering while the other holds it,
    killed together with their supervisor."""
    if SOAK:
        patients, per_patient, n_senders, kills = 300, 16, 8, 25
    else:
        patients, per_patient, n_senders, kills = 40, 8, 4, 3
    rng = random.Random(SEED)
    scripts = build_workload(patients, per_patient, n_senders, SEED, tag="K", mdm_share=0.2)
    sent = [m for s in scripts for m in s]
    total = len(sent)
    engine = EngineProcess(tmp_path / "r1", db_url, workers=workers)
    progress = Progress()
    senders = []
    engine.start()
    try:
        senders += run_senders(engine, scripts, progress)
        marks = sorted(rng.sample(range(total // 10, total * 9 // 10), kills))
        for mark in marks:
            assert progress.wait_for(mark, 180), f"stalled at {progress.count} ACKs:\n{engine.log_tail()}"
            engine.kill()
            engine.start()
        join_senders(senders, 600 if SOAK else 180)
        db = checkdb()
        # Once more while the workers still have a backlog (if they do): a kill mid-apply.
        drain_kill = int(bool(table_counts(db).get("items_pending")))
        if drain_kill:
            engine.kill()
            engine.start()
        wait_drained(db, 300 if SOAK else 120)
        report = check_history(db, sent)
    finally:
        stop_senders(senders)
        engine.stop()
    report.figures.update(
        kills=engine.kills,
        killed_while_draining=drain_kill,
        answered_from_journal=engine.log_count("outcome=duplicate"),
    )
    _figures("R1" if workers == 1 else f"R1 --workers {workers}", report)
    assert report.violations == [], str(report)
    assert engine.kills == kills + drain_kill
    assert report.figures["acked"] == total and report.figures["items_done"] == total
    assert report.figures["resent"] > 0  # the kills did hit messages in flight


def _journal_row(db, control_id: str):
    from sqlalchemy import select

    from interface.store.schema import messages

    with db.connect() as conn:
        return conn.execute(
            select(messages.c.id, messages.c.ack, messages.c.status).where(
                messages.c.control_id == control_id
            )
        ).all()


def test_r2_lost_ack_window(db_url, checkdb, tmp_path):
    """R2: the engine dies after the commit and before the ACK write (INTERFACE_FAULT
    kill_after_commit), once for an ADT and once for an MDM message: the resend gets the stored
    ACK byte for byte, the effects happen once."""
    script = build_workload(6, 6, 1, SEED, tag="L", mdm_share=0.3)[0]
    adt_victim = next(m for m in script[8:] if m.kind == "adt")
    mdm_victim = next(m for m in script[script.index(adt_victim) + 1 :] if m.kind == "mdm")
    engine = EngineProcess(tmp_path / "r2", db_url)
    engine.start(faults=f"kill_after_commit={adt_victim.control_id}")
    senders = []
    try:
        senders += run_senders(engine, [script])
        for victim, nxt in ((adt_victim, f"kill_after_commit={mdm_victim.control_id}"), (mdm_victim, None)):
            assert engine.wait_exit(120) == -9, engine.log_tail()
            db = checkdb()
            rows = _journal_row(db, victim.control_id)
            assert len(rows) == 1 and rows[0].ack, "the message was committed with its ACK"
            assert victim.acks == [], "no ACK went out before the kill"
            engine.start(faults=nxt)
        join_senders(senders, 120)
        wait_drained(db)
        # Much later (everything processed): resend both once more on a fresh connection.
        from interface.engine.client import MLLPClient

        for victim in (adt_victim, mdm_victim):
            with MLLPClient("127.0.0.1", engine.ports[victim.channel], timeout=30) as c:
                res = c.send(victim.body)
            victim.acks.append(res.raw)
            victim.transmissions += 1
        report = check_history(db, script)
    finally:
        stop_senders(senders)
        engine.stop()
    _figures("R2", report)
    assert report.violations == [], str(report)
    for victim in (adt_victim, mdm_victim):
        (row,) = _journal_row(db, victim.control_id)
        assert victim.lost >= 1 and len(victim.ok_acks()) == 2
        assert all(a == row.ack for a in victim.acks), "every answer is the stored ACK, byte for byte"
    assert engine.kills == 0 and engine.starts == 3
    for victim in (adt_victim, mdm_victim):  # answered from the journal, not stored again
        assert engine.log_count(f"control_id={victim.control_id} ", "outcome=duplicate") == 2
    assert report.figures["acked"] == len(script)


def _conflicting(m):
    """Same channel, MSH-3/4 and MSH-10 as ``m``, different body (another given name)."""
    from .reliability_kit import Sent, given_of

    body = m.body.replace(given_of(m.seq).encode(), b"CONFLICT", 1)
    assert body != m.body
    return Sent(m.channel, m.patient, m.mrn, m.seq, m.control_id, body, m.kind)


@pytest.mark.slow
def test_r3_duplicate_storm(db_url, checkdb, tmp_path):
    """R3: a share of the messages resent 1-5 times, some at once, some much later (after they
    were processed): 0 extra records, every answer the stored ACK byte for byte; the same
    control id with a different body is quarantined (AR, ERR 205) and changes nothing."""
    from sqlalchemy import func, select

    from interface.store.chart_schema import chart_history, patients
    from interface.store.document_schema import documents
    from interface.store.schema import messages

    rng = random.Random(SEED + 3)
    n_patients = 200 if SOAK else 24
    scripts = build_workload(n_patients, 8, 3, SEED + 3, tag="D", mdm_share=0.2)
    originals = [m for s in scripts for m in s]
    chosen = rng.sample(originals, len(originals) * 3 // 10)
    late: list = []
    soon = 0
    for m in chosen:
        times = rng.randint(1, 5)
        for _ in range(times):
            if rng.random() < 0.5:
                late.append(m)
            else:  # soon: a few places after the original, on the same connection
                s = next(s for s in scripts if m in s)
                s.insert(min(len(s), s.index(m) + 1 + rng.randint(0, 3)), m)
                soon += 1
    conflicts = [_conflicting(m) for m in rng.sample(originals, 30 if SOAK else 6)]
    rng.shuffle(late)
    engine = EngineProcess(tmp_path / "r3", db_url)
    engine.start()
    try:
        join_senders(run_senders(engine, scripts), 120)
        db = checkdb()
        wait_drained(db)
        join_senders(run_senders(engine, [late[0::2] + conflicts[:3], late[1::2] + conflicts[3:]]), 120)
        wait_drained(db)
        report = check_history(db, originals, expect_error_items=len(conflicts))
        with db.connect() as conn:
            quarantined = conn.execute(
                select(func.count()).select_from(messages).where(messages.c.status == "quarantined")
            ).scalar()
            patients_stored = conn.execute(select(func.count()).select_from(patients)).scalar()
            n_docs = conn.execute(select(func.count()).select_from(documents)).scalar()
            conflict_changes = conn.execute(
                select(func.count()).select_from(chart_history).where(chart_history.c.new_value == "CONFLICT")
            ).scalar()
    finally:
        engine.stop()
    extra = soon + len(late)
    report.figures.update(
        resends=extra, resent_late=len(late), conflicts=len(conflicts), quarantined=quarantined
    )
    _figures("R3", report)
    assert report.violations == [], str(report)
    assert report.figures["acked"] == len(originals)
    assert report.figures["duplicate_acks"] == extra  # every resend answered AA, the stored bytes
    assert engine.log_count("outcome=duplicate") == extra
    assert report.figures["journal_rows"] == len(originals) + len(conflicts)  # 0 extra records
    assert patients_stored == n_patients and n_docs == sum(m.kind == "mdm" for m in originals)
    assert quarantined == len(conflicts) and conflict_changes == 0
    from interface.engine.client import parse_ack

    for c in conflicts:
        assert len(c.acks) == 1
        code, ctl, _ = parse_ack(c.acks[0])
        assert code == "AR" and ctl == c.control_id and b"ERR|" in c.acks[0] and b"205" in c.acks[0]


def test_r4_poison_isolation(engine, tmp_path):
    """R4 (in-process Engine + Worker): one unmappable message for patient P (PID-7 birth date
    19701350), then 99 valid ones for P while 20 other patients keep sending: P's 99 wait in
    order, never attempted; every worker attempt goes to the others, who are all done after
    each wave (counts, not timings); 1 error item. Retried as is, it fails again; fixed and
    resubmitted (errorqueue.resubmit_item), P's 100 apply in order."""
    from datetime import datetime, timedelta, timezone
    from pathlib import Path

    from sqlalchemy import select

    from interface.config.channels import load_channels
    from interface.desk import errorqueue
    from interface.engine.inbound import Engine
    from interface.engine.processing import Worker
    from interface.ops.runtime import Settings, load_pipeline
    from interface.store import workqueue
    from interface.store.chart_schema import chart_history
    from interface.store.schema import work_attempts, work_items

    from .reliability_kit import ROOT, adt_message, given_of, mrn_of

    t = [datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)]

    def clock():
        return t[0]

    channels = [c for c in load_channels(ROOT / "channels") if c.name == "adt"]
    pipeline = load_pipeline(
        Settings(
            channels_dir=ROOT / "channels",
            mappings_dir=ROOT / "mappings",
            rules_file=None,
            var_dir=Path(tmp_path),
        ),
        channels,
    )
    adt = channels[0]
    eng = Engine(engine, clock=clock)
    worker = Worker(engine, pipeline, clock=clock, batch=64)
    rng = random.Random(SEED + 4)
    P, others, waves = mrn_of(0, "P"), [mrn_of(i, "P") for i in range(1, 21)], 10
    events = ("A08", "A02", "A01", "A08", "A03")

    def msg(mrn, seq, **kw):
        ev = "A04" if seq == 1 else rng.choice(events)
        return adt_message(mrn, seq, ev, f"{mrn}.{seq:04d}", **kw)

    poison = eng.receive(adt, msg(P, 1, birth_date="19701350"))
    assert poison.ack_code == "AA"  # accepted on commit: mapping errors go to the error queue
    assert worker.run_once() == 1 and worker.failed == 1  # tried once: into the error queue
    p_next = 2
    others_done_per_round = []

    def status(mrn_list):
        with engine.connect() as conn:
            return [
                r.status
                for r in conn.execute(
                    select(work_items.c.status)
                    .where(work_items.c.key.in_([f"mrn:{m}" for m in mrn_list]))
                    .order_by(work_items.c.id)
                )
            ]

    rounds_per_wave = []
    for wave in range(1, waves + 1):  # others flowing, P's messages arriving in between
        for mrn in others:
            assert eng.receive(adt, msg(mrn, wave)).ack_code == "AA"
        for _ in range(10):
            if p_next <= 100:
                assert eng.receive(adt, msg(P, p_next)).ack_code == "AA"
                p_next += 1
        rounds = 0
        before = status(others).count("done")
        while n := worker.run_once():  # every attempt of every round goes to another patient
            after = status(others).count("done")
            assert after - before == n, f"round {rounds}: {n} attempts, {after - before} others done"
            before, rounds = after, rounds + 1
        rounds_per_wave.append(rounds)
        others_done_per_round.append(before)
    p_status = status([P])
    assert others_done_per_round == [20 * w for w in range(1, waves + 1)], others_done_per_round
    assert p_status == ["error"] + ["pending"] * 99
    with engine.connect() as conn:
        (bad,) = conn.execute(select(work_items).where(work_items.c.status == "error")).all()
        p_ids = [
            r.id
            for r in conn.execute(
                select(work_items.c.id).where(work_items.c.key == f"mrn:{P}").order_by(work_items.c.id)
            )
        ]
        attempted = conn.execute(
            select(work_attempts.c.item_id).where(work_attempts.c.item_id.in_(p_ids[1:]))
        ).all()
    assert bad.reason == "invalid_value" and bad.error_location == "PID-7" and attempted == []
    assert worker.run_once() == 0  # nothing else runnable: P waits

    with engine.begin() as conn:  # a clerk retries it as is: same error, P still waits
        errorqueue.retry_item(conn, bad.id, user="clerk", now=clock())
    worker.run_once()
    assert status([P]) == ["error"] + ["pending"] * 99

    t[0] += timedelta(minutes=5)
    fixed = msg(P, 1, birth_date="19700101")  # the same A04 with a valid birth date
    with engine.begin() as conn:  # fix and resubmit: it keeps its place at the head of P's queue
        errorqueue.resubmit_item(conn, bad.id, fixed, user="clerk", now=clock())
    rounds = 0
    while worker.run_once():
        rounds += 1
    assert status([P]) == ["done"] * 100 and rounds == 100  # one per round: strictly in order
    with engine.connect() as conn:
        chain = [
            g.new_value
            for g in given_changes(
                conn.execute(
                    select(chart_history)
                    .where(
                        chart_history.c.mrn == P,
                        chart_history.c.table_name == "patients",
                        (chart_history.c.field == "given") | (chart_history.c.action == "initial"),
                    )
                    .order_by(chart_history.c.id)
                ).all()
            )
        ]
        done = [
            r.item_id
            for r in conn.execute(
                select(work_attempts.c.item_id)
                .where(work_attempts.c.item_id.in_(p_ids), work_attempts.c.outcome == "done")
                .order_by(work_attempts.c.id)
            )
        ]
    assert chain == [given_of(s) for s in range(1, 101)]
    assert done == p_ids  # applied once each, in arrival order
    print(
        f"\nR4: others done after each wave {others_done_per_round} in {rounds_per_wave} worker "
        f"rounds; P: 1 error item, 99 waiting with 0 "
        f"attempts; after resubmit 100 applied in {rounds} rounds, in order"
    )


class _Outage:
    """Take the database away and give it back. PostgreSQL: refuse new connections to the
    test database and terminate every backend on it (a real outage for the engine).
    SQLite: the engine runs with INTERFACE_FAULT db_down_file=PATH, every statement fails while
    the file exists (an embedded database has no server to take away)."""

    def __init__(self, db_url: str, workdir):
        self.db_url = db_url
        self.pg = db_url.startswith("postgresql")
        self.flag = workdir / "db-down"
        self.faults = None if self.pg else f"db_down_file={self.flag}"

    def _admin(self, *statements):
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = make_url(os.environ["INTERFACE_TEST_DB_URL"]).set(drivername="postgresql+psycopg")
        name = make_url(self.db_url).database
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for s in statements:
                    conn.execute(text(s.format(name=name)), {"name": name})
        finally:
            admin.dispose()

    def begin(self) -> None:
        if self.pg:
            self._admin(
                'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()",
            )
        else:
            self.flag.touch()

    def end(self) -> None:
        if self.pg:
            self._admin('ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        else:
            self.flag.unlink(missing_ok=True)


@pytest.mark.slow
def test_r5_database_outage(db_url, checkdb, tmp_path):
    """R5: the database goes away mid-run and comes back: while it is away the engine answers
    AE (ERR 207) or closes the connection, never AA; every AA'd message is in the journal and
    applied once, in order; after recovery the senders' resends make it whole: nothing lost."""
    import threading
    import time

    scripts = build_workload(200 if SOAK else 24, 8, 3, SEED + 5, tag="O", mdm_share=0.2)
    sent = [m for s in scripts for m in s]
    outage = _Outage(db_url, tmp_path)
    engine = EngineProcess(tmp_path / "r5", db_url)
    progress = Progress()
    engine.start(faults=outage.faults)

    def refused() -> int:
        return sum(a.count(b"MSA|AE|") for m in sent for a in list(m.acks)) + sum(m.lost for m in sent)

    senders = []
    try:
        senders += run_senders(engine, scripts, progress)
        outages, wanted = (3, 200) if SOAK else (1, 30)
        during = 0
        for k in range(1, outages + 1):
            assert progress.wait_for(len(sent) * k // (outages + 2), 300), engine.log_tail()
            outage.begin()
            try:
                acked_before, refused_before = progress.count, refused()
                deadline = time.monotonic() + 120
                while refused() < refused_before + wanted:  # senders keep trying: wait for refusals
                    assert time.monotonic() < deadline, f"no refusals during the outage:\n{engine.log_tail()}"
                    threading.Event().wait(0.05)
                during += progress.count - acked_before
            finally:
                outage.end()
        join_senders(senders, 180)
        db = checkdb()
        wait_drained(db)
        report = check_history(db, sent)
        survived = engine.alive and engine.starts == 1  # recovered by itself, no restart
    finally:
        outage.end()
        stop_senders(senders)
        engine.stop()
    ae = [a for m in sent for a in m.acks if b"MSA|AE|" in a]
    report.figures.update(
        outages=outages, refused_during_outage=refused(), ae_answers=len(ae), acked_while_down=during
    )
    _figures("R5", report)
    assert report.violations == [], str(report)
    assert report.figures["acked"] == len(sent) and report.figures["gave_up"] == 0
    assert ae and all(b"207" in a for a in ae)  # AE with ERR-3 207 (application internal error)
    assert survived


@pytest.mark.slow
def test_r6_backpressure(db_url, checkdb, tmp_path):
    """R6: commits slowed down (INTERFACE_FAULT commit_delay), many connections pipelining
    frames flat out: the engine stops reading (pauseProducing) so its RSS stays under a fixed
    bound while the senders offer far more than that; no errors (every frame AA, stored once,
    applied in order); ACK latency rises instead."""
    import statistics
    import threading

    from interface.engine.client import MLLPClient

    from .reliability_kit import FloodSender, Sent, adt_message, mrn_of

    connections, per_conn_patients, pad = 16, 3, 16384
    duration = 12.0 if SOAK else 4.0
    limit = 800  # per connection: 200 MB offered if nothing pushed back
    bound = 64 * 2**20
    engine = EngineProcess(tmp_path / "r6", db_url)
    engine.start(faults="commit_delay=0.05")
    stop = threading.Event()
    samples: list[int] = []

    def sample():  # the engine is a real subprocess: read its RSS from /proc until told to stop
        while not stop.wait(0.05):
            samples.append(engine.rss_bytes())

    def maker(conn_no: int):
        def make(i: int) -> Sent:
            p = conn_no * per_conn_patients + i % per_conn_patients
            seq = i // per_conn_patients + 1
            mrn = mrn_of(p, "B")
            ctl = f"B{p:05d}.{seq:05d}"
            ev = "A04" if seq == 1 else "A08"
            return Sent("adt", p, mrn, seq, ctl, adt_message(mrn, seq, ev, ctl, pad=pad), "adt")

        return make

    try:
        import time

        warm, unloaded = [], []  # one message at a time on one connection, before the flood
        with MLLPClient("127.0.0.1", engine.ports["adt"], timeout=30) as c:
            for i in range(5):
                m = maker(connections)(i * per_conn_patients)  # a patient of its own
                t0 = time.monotonic()
                res = c.send(m.body)
                unloaded.append(time.monotonic() - t0)
                m.acks.append(res.raw)
                m.transmissions = 1
                warm.append(m)
        base_rss = engine.rss_bytes()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        floods = [
            FloodSender(engine.ports["adt"], maker(k), limit=limit, duration=duration)
            for k in range(connections)
        ]
        for f in floods:
            f.start()
        for f in floods:
            f.join(duration + 180)
        stop.set()
        sampler.join(5)
        errors = [repr(f.error) for f in floods if f.error is not None or f.is_alive()]
        assert errors == [], errors
        db = checkdb()
        sent = [m for f in floods for m in f.sent]
        wait_drained(db, 180)
        sent += warm
        report = check_history(db, sent)
    finally:
        stop.set()
        engine.stop()
    offered = sum(f.bytes_sent for f in floods)
    lat = sorted(x for f in floods for m in f.sent for x in m.latencies)
    growth = max(samples) - base_rss
    report.figures.update(
        connections=connections,
        frame_bytes=len(sent[0].body),
        bytes_sent=offered,
        rss_base_mb=round(base_rss / 2**20, 1),
        rss_growth_mb=round(growth / 2**20, 1),
        unloaded_latency_s=round(statistics.median(unloaded), 2),
        latency_p50_s=round(statistics.median(lat), 2),
        latency_max_s=round(lat[-1], 2),
        offered_if_unthrottled_mb=round(connections * limit * len(sent[0].body) / 2**20),
    )
    _figures("R6", report)
    assert report.violations == [], str(report)
    assert all(m.codes() == ["AA"] for m in sent)  # no errors, each answered once
    assert growth < bound, f"RSS grew by {growth / 2**20:.0f} MB"
    assert statistics.median(lat) > 5 * statistics.median(unloaded)  # ACK latency rose
    assert max(len(f.sent) for f in floods) < limit  # the senders were held back, not finished


def test_history_checker_catches_broken_promises(engine, tmp_path):
    """The checker itself: clean after an honest run; each kind of broken promise (an ACK with
    nothing stored, an ACK that is not the stored one, a message stored twice, an effect
    applied twice / out of order, an undrained queue) is reported."""
    from sqlalchemy import insert, select, update

    from interface.config.channels import load_channels
    from interface.engine.inbound import Engine
    from interface.engine.processing import Worker
    from interface.ops.runtime import Settings, load_pipeline
    from interface.store.chart_schema import chart_history
    from interface.store.schema import messages, work_items

    from .reliability_kit import ROOT, Sent, adt_message, mrn_of

    channels = [c for c in load_channels(ROOT / "channels") if c.name in ("adt", "mdm")]
    pipeline = load_pipeline(
        Settings(mappings_dir=ROOT / "mappings", rules_file=None, var_dir=tmp_path), channels
    )
    by_name = {c.name: c for c in channels}
    eng = Engine(engine)
    worker = Worker(engine, pipeline, clock=eng.clock)
    script = build_workload(3, 4, 1, SEED, tag="C", mdm_share=0.25)[0]
    for m in script:
        m.acks.append(eng.receive(by_name[m.channel], m.body).ack)
        m.transmissions = 1
    while worker.run_once():
        pass
    assert check_history(engine, script).violations == []

    ghost = Sent("adt", 9, mrn_of(9, "C"), 1, "GHOST", adt_message(mrn_of(9, "C"), 1, "A04", "GHOST"), "adt")
    ghost.acks.append(script[0].acks[0].replace(script[0].control_id.encode(), b"GHOST"))
    altered = next(m for m in script[1:] if m.kind == "adt")
    altered.acks.append(altered.acks[0] + b"NTE|1||not the stored ACK\r")
    adts = [m for m in script if m.kind == "adt"]
    p_msgs = [m for m in adts if m.mrn == adts[0].mrn]
    with engine.begin() as conn:
        row = conn.execute(select(messages).where(messages.c.control_id == script[-1].control_id)).one()
        copy = {k: v for k, v in row._mapping.items() if k not in ("id", "dedup_key")}
        conn.execute(insert(messages).values(**copy))  # stored twice
        first = conn.execute(
            select(messages.c.id).where(messages.c.control_id == p_msgs[0].control_id)
        ).scalar()
        conn.execute(
            insert(chart_history).values(  # the first message applied again, at the end
                mrn=p_msgs[0].mrn,
                table_name="patients",
                field="given",
                action="set",
                old_value="S999999",
                new_value=f"S{p_msgs[0].seq:06d}",
                message_id=first,
                at=eng.clock(),
            )
        )
        conn.execute(
            update(work_items)
            .where(work_items.c.id == conn.execute(select(func.max(work_items.c.id))).scalar())
            .values(status="pending")
        )
    found = "\n".join(check_history(engine, script + [ghost]).violations)
    for expected in (
        "GHOST: ACKed AA but not in the journal",
        f"{altered.control_id}: an ACK received differs from the stored ACK",
        f"{script[-1].control_id}: stored 2 times",
        "work item pending",
        "journal rows for",
        f"{p_msgs[0].control_id}: 2 chart changes of the given name",
        f"patient {p_msgs[0].mrn}: chart history given-name sequence",
        f"patient {p_msgs[0].mrn}: history row",
        "queue not drained",
    ):
        assert expected in found, found
