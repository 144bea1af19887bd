"""Order per patient through the real queue: several sender threads (connections) call
Engine.receive for many patients at once while several Workers apply; every patient's messages
are applied in arrival (journal) order and the chart ends at the last message's values."""

from __future__ import annotations

import random
import re
import threading

from sqlalchemy import func, select

from interface.store.schema import messages, work_attempts, work_items
from tests.test_adt_events import Harness, adt, pv1

PATIENTS = 30
PER_PATIENT = 8
SENDERS = 4
WORKERS = 3


def _plan() -> list[list[str]]:
    """Per sender (connection), its messages: A08s and A02s for its share of the patients,
    the patients interleaved at random. A sender waits for each ACK before the next message, as
    MLLP senders do, so a patient's arrival order is its sender's order; two connections racing
    each other for one patient have no order to keep."""
    rng = random.Random(7)
    work = []
    for p in range(PATIENTS):
        for i in range(PER_PATIENT):
            event = "A02" if i % 3 == 2 else "A08"
            work.append((p, i, event))
    rng.shuffle(work)
    work.sort(key=lambda w: (w[0], w[1]))  # each patient's messages in their own order...
    order = list(range(len(work)))
    rng.shuffle(order)  # ...then spread over the senders, patients interleaved
    plans: list[list[str]] = [[] for _ in range(SENDERS)]
    for n in sorted(order, key=lambda n: (work[n][1], order[n])):
        p, i, event = work[n]
        t = p % SENDERS
        mrn = f"P{p:03d}"
        name = f"DOE^S{t}N{n}"
        plans[t].append(
            adt(
                event,
                mrn,
                name=name,
                time="20260301100000",
                pv1_=pv1(loc=f"W{n}^1^A^HOSP", visit="V1") if event == "A02" else None,
                cid=f"M{n}",
            )
        )
    return plans


def test_many_senders_many_workers_keep_order_per_patient(engine):
    h = Harness(engine, workers=WORKERS, batch=4)
    for p in range(PATIENTS):  # admissions first, so every later message has its visit
        assert h.send(adt("A01", f"P{p:03d}", pv1_=pv1(visit="V1"), cid=f"A{p}")).status == "accepted"
    plans = _plan()
    senders_done = threading.Event()
    arrived = threading.Event()
    failures: list[BaseException] = []

    def sender(msgs: list[str]) -> None:
        try:
            for m in msgs:
                out = h.send(m)
                assert out.status == "accepted", out.text
                arrived.set()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def unfinished() -> int:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(work_items)
                .where(work_items.c.status.in_(("pending", "held")))
            ).scalar()

    def work(w) -> None:
        try:
            while True:
                if w.run_once():
                    continue
                if senders_done.is_set() and unfinished() == 0:
                    return
                arrived.wait(0.05)  # woken by the next arrival (an event, not a sleep)
                arrived.clear()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(plan,)) for plan in plans]
    workers = [threading.Thread(target=work, args=(w,)) for w in h.workers]
    for t in threads + workers:
        t.start()
    for t in threads:
        t.join(60)
    senders_done.set()
    arrived.set()
    for t in workers:
        t.join(120)
    assert not any(t.is_alive() for t in threads + workers), "threads did not finish"
    assert failures == []

    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(work_items.c.status, func.count()).group_by(work_items.c.status)).all()
        )
        assert statuses == {"done": PATIENTS * (PER_PATIENT + 1)}
        rows = conn.execute(
            select(messages.c.id, messages.c.patient_id, messages.c.raw).order_by(messages.c.id)
        ).all()
        done = (
            conn.execute(
                select(work_items.c.message_id)
                .join(work_attempts, work_attempts.c.item_id == work_items.c.id)
                .where(work_attempts.c.outcome == "done")
                .order_by(work_attempts.c.id)
            )
            .scalars()
            .all()
        )
    arrival: dict[str, list[int]] = {}
    last_raw: dict[str, bytes] = {}
    for mid, mrn, raw in rows:
        arrival.setdefault(mrn, []).append(mid)
        last_raw[mrn] = raw
    patient_of = {mid: mrn for mid, mrn, _ in rows}
    applied: dict[str, list[int]] = {}
    for mid in done:
        applied.setdefault(patient_of[mid], []).append(mid)
    assert len(arrival) == PATIENTS
    for mrn, ids in arrival.items():
        assert applied[mrn] == ids, f"{mrn} applied out of arrival order"
    # the chart holds the last arrived message's name (and the last transfer's location)
    for mrn, raw in last_raw.items():
        given = re.search(rb"PID\|1\|\|[^|]*\|\|DOE\^([^|\r]*)", raw).group(1).decode()
        assert h.chart(mrn)["name"]["given"] == given, mrn
    # the work was really spread over the workers
    assert sum(1 for w in h.workers if w.processed) >= 2


def test_a_failing_item_in_a_chunk_fails_alone(engine):
    """The worker applies a chunk optimistically under one savepoint; one failing item rolls the
    chunk back and it is applied item by item: the others are done with their effects, the
    failing one is in the error queue with none — not even what it wrote before it failed (an
    A11 for a discharged visit updates the demographics, then finds it cannot cancel)."""
    from interface.store import chart, chart_read

    h = Harness(engine)
    h.send(adt("A01", "Q002", name="DOE^BEFORE", pv1_=pv1(visit="V2"), cid="S1"))
    h.send(adt("A03", "Q002", name="DOE^BEFORE", pv1_=pv1(visit="V2"), cid="S2"))
    assert h.drain() == 2
    for p in range(5):
        event = "A11" if p == 2 else "A01"
        assert (
            h.send(adt(event, f"Q{p:03d}", name=f"DOE^Q{p}", pv1_=pv1(visit=f"V{p}"), cid=f"Q{p}")).status
            == "accepted"
        )
    assert h.drain() == 5
    items = h.items()[2:]
    assert [i.status for i in items] == ["done", "done", "error", "done", "done"]
    assert items[2].reason == "out_of_order"
    with engine.connect() as conn:
        assert chart_read.get_chart(conn, "Q002")["name"]["given"] == "BEFORE"
        for p in (0, 1, 3, 4):
            c = chart_read.get_chart(conn, f"Q{p:03d}")
            assert c["visits"][0]["status"] == "admitted" and c["name"]["given"] == f"Q{p}"
        statuses = dict(conn.execute(select(messages.c.control_id, messages.c.status)).all())
    assert {k: v for k, v in statuses.items() if k.startswith("Q")} == {
        "Q0": "processed",
        "Q1": "processed",
        "Q2": "error",
        "Q3": "processed",
        "Q4": "processed",
    }
    assert h.worker.failed == 1


def test_a_clean_chunk_is_bookkept_in_one_go(engine):
    """Items of a chunk that all apply are done, with one attempt each, their keys released and
    their messages processed (queue.mark_done_many)."""
    h = Harness(engine)
    for p in range(6):
        h.send(adt("A04", f"R{p:03d}", pv1_=pv1(cls="O", visit=f"W{p}"), cid=f"R{p}"))
    assert h.drain() == 6
    assert [(i.status, i.attempts) for i in h.items()] == [("done", 1)] * 6
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(work_attempts)).scalar() == 6
        assert {s for (s,) in conn.execute(select(messages.c.status))} == {"processed"}
        from interface.store.schema import work_keys

        assert conn.execute(select(func.count()).select_from(work_keys)).scalar() == 0
