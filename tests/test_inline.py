"""``apply: inline`` (docs/queues.md): the store item is applied in the transaction that journals
the message, when it is first in line for its patient; the ACK stays the on_commit accept ACK."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from interface.engine.outcome import Inbound
from interface.store import chart, chart_apply, chart_read
from interface.store.chart_schema import chart_history
from interface.store.schema import messages, work_attempts, work_items, work_keys

from .test_destinations import Rig, adt, channel


def _patient(db, mrn: str):
    with db.connect() as conn:
        return chart_read.get_chart(conn, mrn)


def test_applied_before_the_ack_with_the_accept_ack(engine):
    rig = Rig(engine, channel())
    out = rig.send(adt("C1", "M1", "A01"))
    assert (out.status, out.ack_code) == ("processed", "AA")
    assert rig.status("store") == {"C1": "done"}
    assert _patient(engine, "M1")["name"]["family"] == "DOE"  # the chart is current at ACK time
    assert rig.worker.run_once() == 0  # nothing left for the worker


def test_a_failing_item_still_gets_aa_and_goes_to_the_error_queue(engine):
    """on_commit semantics are kept: a mapping error is the clerk's, not the sender's."""
    rig = Rig(engine, channel())
    out = rig.send(adt("C1", "M1", "A01", dob="1980XX01"))
    assert (out.status, out.ack_code) == ("accepted", "AA") and b"ERR" not in out.ack
    item = rig.items("store")[0]
    assert item.status == "error" and item.error_location.startswith("PID-7"), item
    assert item.attempts == 1 and item.reason


def test_a_message_behind_an_unfinished_one_stays_queued_in_order(engine):
    """The patient's first message is in the error queue: the next one is not applied inline
    (it would overtake it); after the clerk discards the first, the worker applies the second."""
    rig = Rig(engine, channel())
    rig.send(adt("C1", "M1", "A01", dob="1980XX01"))  # error queue, keeps the patient's key
    out = rig.send(adt("C2", "M1", "A08"))
    assert (out.status, out.ack_code) == ("accepted", "AA")
    assert rig.status("store") == {"C1": "error", "C2": "pending"}
    other = rig.send(adt("D1", "M2", "A01"))  # another patient is not held up
    assert other.status == "processed"
    rig.drain()
    assert rig.status("store")["C2"] == "pending"  # still behind the error item


def test_same_patient_twice_in_one_group_commit_keeps_order(engine):
    """Two messages for one patient in one group (two connections): the first is applied first
    (journalled as applied: it is first in line), then the second, behind it, in the same
    transaction — never the other way round."""
    rig = Rig(engine, channel())
    outs = rig.engine.receive_many(
        [
            Inbound(rig.ch, adt("C1", "M1", "A01"), "a"),
            Inbound(rig.ch, adt("C2", "M1", "A08", dob="19810101"), "b"),
        ]
    )
    assert [o.status for o in outs] == ["processed", "processed"]
    assert rig.status("store") == {"C1": "done", "C2": "done"}
    with engine.connect() as conn:
        events = [a.outcome for a in conn.execute(select(work_attempts).order_by(work_attempts.c.id))]
        change = conn.execute(select(chart_history).where(chart_history.c.field == "birth_date")).one()
    assert events == ["done", "done"]
    assert (change.event, change.old_value, change.new_value) == ("A08", "1980-01-01", "1981-01-01")
    assert _patient(engine, "M1")["birth_date"] == "1981-01-01"


def test_behind_a_failing_first_message_the_second_waits(engine):
    """The first message of the group for a patient fails (a mapping error): it goes to the
    error queue keeping the patient's key, and the second, behind it, is not applied."""
    rig = Rig(engine, channel())
    outs = rig.engine.receive_many(
        [
            Inbound(rig.ch, adt("C1", "M1", "A01", dob="1980XX01"), "a"),
            Inbound(rig.ch, adt("C2", "M1", "A08"), "b"),
        ]
    )
    assert [o.status for o in outs] == ["accepted", "accepted"]
    assert rig.status("store") == {"C1": "error", "C2": "pending"}
    rig.drain()
    assert rig.status("store") == {"C1": "error", "C2": "pending"}


def test_a_first_in_line_message_that_fails_when_applied_goes_the_ordinary_way(engine):
    """Mapped fine, first in line, journalled as applied — then the chart refuses it (A13 for a
    visit that does not exist): the savepoint is rolled back, the group's first-in-line messages
    are turned back into ordinary new ones, and each takes its own outcome: the good one done,
    the bad one in the error queue with its key held, one attempt each, nothing doubled."""
    rig = Rig(engine, channel())
    bad = adt("C2", "M2", "A13").replace(
        b"PV1|1|I|W1^101^A^HOSP", b"PV1|1|I|W1^101^A^HOSP" + b"|" * 16 + b"NOSUCHVISIT"
    )
    outs = rig.engine.receive_many([Inbound(rig.ch, adt("C1", "M1", "A01"), "a"), Inbound(rig.ch, bad, "b")])
    assert [(o.status, o.ack_code) for o in outs] == [("processed", "AA"), ("accepted", "AA")]
    assert rig.status("store") == {"C1": "done", "C2": "error"}
    with engine.connect() as conn:
        attempts = conn.execute(
            select(work_items.c.id, work_items.c.attempts, work_items.c.reason).order_by(work_items.c.id)
        ).all()
        outcomes = [
            (a.item_id, a.outcome) for a in conn.execute(select(work_attempts).order_by(work_attempts.c.id))
        ]
        keys = [k.key for k in conn.execute(select(work_keys))]
        statuses = [m.status for m in conn.execute(select(messages.c.status).order_by(messages.c.id))]
    assert [(a.attempts, a.reason) for a in attempts] == [(1, None), (1, "unknown_visit")]
    assert sorted(outcomes) == [(attempts[0].id, "done"), (attempts[1].id, "error")]
    assert keys == ["mrn:M2"]  # the error item blocks its patient, and only it
    assert statuses == ["processed", "error"]
    assert _patient(engine, "M1")["name"]["family"] == "DOE"


def test_a_database_error_while_applying_leaves_the_message_journalled_and_queued(engine, monkeypatch):
    """The savepoint: a database error in the chart store rolls back the applying only; the
    message is committed and ACKed AA, its item pending, and the worker applies it later."""
    rig = Rig(engine, channel())
    real = chart_apply.apply_updates

    def broken(*a, **kw):
        raise OperationalError("UPDATE patients", {}, Exception("disk I/O error"))

    monkeypatch.setattr(chart_apply, "apply_updates", broken)
    out = rig.send(adt("C1", "M1", "A01"))
    assert (out.status, out.ack_code) == ("accepted", "AA")
    assert rig.status("store") == {"C1": "pending"}
    assert _patient(engine, "M1") is None
    monkeypatch.setattr(chart_apply, "apply_updates", real)
    rig.drain()
    assert rig.status("store") == {"C1": "done"}
    assert _patient(engine, "M1")["name"]["family"] == "DOE"


def test_apply_queued_leaves_everything_to_the_worker(engine):
    rig = Rig(engine, channel(apply="queued"))
    out = rig.send(adt("C1", "M1", "A01"))
    assert (out.status, out.ack_code) == ("accepted", "AA")
    assert rig.status("store") == {"C1": "pending"} and _patient(engine, "M1") is None
    rig.drain()
    assert rig.status("store") == {"C1": "done"}
    with engine.connect() as conn:
        assert conn.execute(select(work_items.c.attempts)).scalar() == 1


def test_a_reload_between_mapping_and_applying_uses_the_mapping_pipeline(engine):
    """The pipeline that parsed and mapped a message is the one that applies it inline, even if a
    config reload swapped the worker's pipeline in between (as each worker round does)."""
    from interface.engine.processing import Pipeline

    rig = Rig(engine, channel())
    prep = rig.worker.prepare("adt", "store", adt("C1", "M1", "A01"))
    old = rig.worker.pipeline
    rig.worker.pipeline = Pipeline([], {})  # reloaded: no channel, no mapping
    assert prep.pipeline is old
    rig2 = Rig(engine, channel(apply="queued"))
    rig2.send(adt("C1", "M1", "A01"))  # journalled, queued
    item = rig2.items("store")[0]
    with engine.begin() as conn:
        done = rig.worker.apply_inline(conn, {item.id: prep}, rig.clock())
    assert done == [item.id]
    assert _patient(engine, "M1")["name"]["family"] == "DOE"


def test_the_service_wakes_outbound_workers_for_messages_applied_inline(tmp_path):
    """An inline-applied message (outcome ``processed``) may have queued an application ACK or
    an outbound delivery: the outbound workers are woken for it, the store workers are not
    (nothing is left for them); an ``accepted`` one wakes both."""
    from twisted.internet.task import Clock

    from interface.engine.outcome import Outcome
    from interface.ops.runtime import Settings
    from interface.ops.service import make_service

    chdir = tmp_path / "channels"
    chdir.mkdir()
    (chdir / "adt.yaml").write_text(
        "name: adt\nlisten: tcp:0:interface=127.0.0.1\nmapping: adt\nmrn: {authority: HOSP, types: [MR]}\n"
        "destinations:\n  - {name: lab, type: mllp, host: 127.0.0.1, port: 9}\n"
    )
    from .conftest import ROOT

    settings = Settings(
        channels_dir=chdir,
        mappings_dir=ROOT / "mappings",
        rules_file=None,
        var_dir=tmp_path / "var",
        web_port=None,
    )
    reactor = Clock()
    reactor.callFromThread = lambda f, *a, **kw: f(*a, **kw)
    _top, parts = make_service(settings, reactor=reactor)
    try:
        store, outbound = parts["workers"][0], parts["outbound"]
        assert outbound
        ch = parts["channels"][0]
        parts["writer"].on_outcome(Inbound(ch, b"", None), Outcome("processed", b""))
        assert all(w.wake.is_set() for w in outbound) and not store.wake.is_set()
        parts["writer"].on_outcome(Inbound(ch, b"", None), Outcome("accepted", b""))
        assert store.wake.is_set()
    finally:
        parts["db"].dispose()


def test_a_bug_while_applying_inline_never_costs_the_journal_commit(engine, monkeypatch):
    """Whatever goes wrong in the inline apply (here: an unexpected exception from the worker
    itself), the message is still journalled and ACKed AA, and its item waits for the worker."""
    rig = Rig(engine, channel())

    def boom(*a, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(rig.worker, "apply_new", boom)  # the first-in-line path, then
    monkeypatch.setattr(rig.worker, "apply_inline", boom)  # the ordinary one
    out = rig.send(adt("C1", "M1", "A01"))
    assert (out.status, out.ack_code) == ("accepted", "AA")
    assert rig.status("store") == {"C1": "pending"}
    monkeypatch.undo()
    rig.drain()
    assert rig.status("store") == {"C1": "done"}
