"""R8: outbound delivery to a flaky downstream MLLP peer (a real socket server on 127.0.0.1,
port 0) that drops ACKs, answers late, sends ACKs for other control ids, hangs up, answers AE,
and restarts. Messages for several patients go in through Engine.receive and out through the
OutboundWorker with its real MLLP sender: everything is delivered, each patient's messages
reach the peer in send order (a resend repeats only the message just sent), and every item is
done only after an AA whose MSA-2 was its own control id."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone

from sqlalchemy import func, select

from interface.engine.inbound import Engine
from interface.engine.outbound import MLLPSender, OutboundWorker
from interface.engine.processing import Pipeline
from interface.store.schema import work_attempts, work_items
from tests.test_destinations import adt, channel
from tests.test_outbound import FlakyPeer

PATIENTS = 4
PER_PATIENT = 10
# what the peer does with the n-th message it receives (resends included); a stale ACK is
# followed by a dropped one, so taking a stale ACK for ours would mark an unacknowledged item done
PATTERN = ["ack", "stale", "drop", "ack", "close", "ack", "delay", "stale", "ack", "ae", "ack"]


def script(n: int, ctl: str) -> str:
    if n in (15, 40):
        return "restart"
    return PATTERN[n % len(PATTERN)]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def test_r8_flaky_downstream_everything_delivered_in_order(engine):
    rng = random.Random(8)
    with FlakyPeer(script, delay=0.5, down=0.3) as peer:
        ch = channel(
            [
                {
                    "name": "lab",
                    "type": "mllp",
                    "host": "127.0.0.1",
                    "port": peer.port,
                    "timeout_seconds": 0.25,
                    "connect_timeout_seconds": 1,
                    "retry": {
                        "initial_delay_seconds": 0.01,
                        "factor": 2,
                        "jitter": 0.2,
                        "max_delay_seconds": 0.1,
                        "max_attempts": 1000,
                    },
                }
            ],
            mapping=None,
        )
        eng = Engine(engine, clock=_utcnow)
        pipeline = Pipeline([ch], {})
        senders: list[MLLPSender] = []

        def factory(d):
            senders.append(
                MLLPSender(
                    d.host, d.port, connect_timeout=d.connect_timeout_seconds, ack_timeout=d.timeout_seconds
                )
            )
            return senders[-1]

        worker = OutboundWorker(engine, pipeline, clock=_utcnow, rng=random.Random(1), sender_factory=factory)
        order: dict[str, list[str]] = {}
        plan = [(p, i) for p in range(PATIENTS) for i in range(PER_PATIENT)]
        rng.shuffle(plan)
        seen: dict[int, int] = {}
        for p, _ in plan:  # each patient's messages in increasing sequence, patients interleaved
            i = seen[p] = seen.get(p, -1) + 1
            cid = f"P{p}M{i:02d}"
            order.setdefault(f"M{p}", []).append(cid)
            assert eng.receive(ch, adt(cid, f"M{p}")).status == "accepted"

        idle = threading.Event()
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline:
            if worker.run_once() == 0:
                with engine.connect() as conn:
                    left = conn.execute(
                        select(func.count()).select_from(work_items).where(work_items.c.status != "done")
                    ).scalar()
                if left == 0:
                    break
                idle.wait(0.01)  # items are backing off on the real clock
        worker.close()

    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(work_items.c.status, func.count()).group_by(work_items.c.status)).all()
        )
        retries = conn.execute(
            select(func.count()).select_from(work_attempts).where(work_attempts.c.outcome == "retry")
        ).scalar()
    assert statuses == {"done": PATIENTS * PER_PATIENT}, statuses
    # the peer really misbehaved, many times, and restarted
    assert retries >= 10 and peer.connections >= 5
    assert sum(s.skipped_acks for s in senders) >= 1
    # every message arrived; per patient, in send order, resends only repeating the latest one
    mrn_of = {cid: mrn for mrn, cids in order.items() for cid in cids}
    for mrn, cids in order.items():
        got = [c for c in peer.received if mrn_of[c] == mrn]
        collapsed = [c for k, c in enumerate(got) if k == 0 or got[k - 1] != c]
        assert collapsed == cids, (mrn, got)
    # done only after the peer answered AA with MSA-2 = that control id
    assert set(mrn_of) <= set(peer.acked)
