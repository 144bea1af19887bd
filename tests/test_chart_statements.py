"""How many SQL statements one ADT message costs on the chart-committing path (issue #21).

The bench's realistic ADT mix (``interface.ops.bench_workload.adt_mix``) is received in groups of
16 with ``apply: inline``, as ``python -m interface.benchprofile --inline`` does, through the real
channels, mappings and identity rules; every statement is counted with a SQLAlchemy
``before_cursor_execute`` listener (with one, ``fastsql`` sends its statements through
``Connection.execute`` too, so none is missed). A count, not a time: a change that brings back a
read per message (the identity check reading the chart the apply reads anyway, say) fails here.

Also here: the identity check that reads less still holds what it held, and the finding still
shows the chart's phones and address."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import event, func, select

from interface.config.channels import load_channels
from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound
from interface.engine.processing import Worker
from interface.ops.bench_workload import adt_mix
from interface.ops.runtime import Settings, load_pipeline
from interface.rules import identity
from interface.store import chart_schema as cs
from interface.store import identity_check
from interface.store.schema import messages, work_items
from tests.test_adt_events import ROOT, adt, run
from tests.test_identity_engine import harness

# Measured after the identity check stopped reading the chart again (#21): 12.96 per message on
# SQLite, 12.94 on PostgreSQL (16.09 before); 12.37 and 12.38 once a new patient's demographics
# went into its INSERT (no UPDATE after it). The bound leaves room for the mix, not for a read
# or a write per new patient coming back.
BOUND = {"sqlite": 12.6, "postgresql": 12.6}
N = 480


def _frames() -> list[bytes]:
    wl = adt_mix(N, 16, "S", seed=5, mix="realistic")
    frames, queues = [], [list(c) for c in wl.per_conn]
    while any(queues):  # round robin over the connections, as they would arrive
        for q in queues:
            if q:
                frames.append(q.pop(0)[1][1:-2])  # strip the MLLP framing
    return frames


def test_statements_per_inline_adt_message(engine, db_url):
    channels = load_channels(ROOT / "channels")
    channel = {c.name: c for c in channels}["adt"].model_copy(update={"apply": "inline"})
    settings = Settings(
        db_url=db_url,
        channels_dir=ROOT / "channels",
        mappings_dir=ROOT / "mappings",
        rules_file=ROOT / "rules" / "completeness.yaml",
    )
    clock = lambda: datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)  # noqa: E731
    pipeline = load_pipeline(settings, channels)
    assert pipeline.identity_rules is not None  # the check runs, as in production
    worker = Worker(engine, pipeline, clock=clock)
    eng = Engine(engine, clock=clock, processor=worker)
    frames = _frames()
    counts: Counter[str] = Counter()

    def count(conn, cursor, statement, params, context, executemany):
        counts[" ".join(statement.split()[:3])] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        for i in range(0, len(frames), 16):
            outs = eng.receive_many([Inbound(channel, f, "test") for f in frames[i : i + 16]])
            assert all(o.status in ("processed", "accepted") for out in outs for o in out.messages)
        while worker.run_once():  # those behind an earlier message of their patient in the group
            pass
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == len(frames)
        statuses = dict(
            conn.execute(select(work_items.c.status, func.count()).group_by(work_items.c.status)).all()
        )
        assert statuses == {"done": len(frames)}, statuses
        assert conn.execute(select(func.count()).select_from(cs.patients)).scalar() > 0
    per_message = sum(counts.values()) / len(frames)
    assert per_message <= BOUND[engine.dialect.name], (per_message, counts.most_common(12))


def _phone_rules() -> identity.IdentityRules:
    """The house rules with the ADT channel's phone made to hold (``must_agree``)."""
    rules = identity.load_rules(ROOT / "rules" / "identity.yaml")
    over = rules.channels["adt"].model_copy(update={"phone": identity.FieldRule(check="must_agree")})
    return rules.model_copy(update={"channels": {**rules.channels, "adt": over}})


def _with_phone(message: str, number: str) -> str:
    """``message`` (tests.test_adt_events.adt) with a home phone in PID-13."""
    head, sep, rest = message.partition("PID|")
    pid, _, tail = rest.partition("\r")
    fields = pid.split("|") + [""] * 13
    fields[12] = f"^PRN^PH^^^555^{number}"
    return head + sep + "|".join(fields[:13]) + "\r" + tail


ADDRESS = "1 MAIN ST^^SPRINGFIELD^IL^62701"


def test_a_phone_the_rule_holds_on_is_still_compared(engine):
    h = harness(engine)
    h.pipeline.identity_rules = _phone_rules()
    run(h, _with_phone(adt("A04", address=ADDRESS), "1234567"))
    h.send(_with_phone(adt("A08"), "7654321"))
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch"
    with h.db.connect() as conn:
        rev = identity_check.review(conn, item.id)
    chart = rev["detail"]["chart"]
    assert chart["phones"] and "1234567" in chart["phones"][0]
    assert chart["address"] and "SPRINGFIELD" in chart["address"]
    assert {d["field"] for d in rev["detail"]["differences"]} == {"phone"}


def test_a_noted_phone_does_not_hold_and_a_held_finding_shows_the_whole_chart(engine):
    h = harness(engine)  # the house rules: phone is `note`
    run(h, _with_phone(adt("A04", address=ADDRESS), "1234567"))
    run(h, _with_phone(adt("A08"), "7654321"))  # filed: a noted difference never holds
    assert h.items("error") == []
    h.send(adt("A08", dob="19700101"))  # a rewritten birth date is held
    h.drain()
    (item,) = h.items("error")
    with h.db.connect() as conn:
        rev = identity_check.review(conn, item.id)
    chart = rev["detail"]["chart"]  # the whole chart person, phones and address included
    assert chart["address"] and "SPRINGFIELD" in chart["address"]
    assert chart["phones"] and "7654321" in chart["phones"][0]
    assert {d["field"]: d["verdict"] for d in rev["detail"]["differences"]} == {"birth_date": "mismatch"}
