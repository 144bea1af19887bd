"""Destinations: one work item per (message, destination), ordered per key within each
destination's lane, so a downstream outage blocks only that destination's key; ``order_by``;
``ack: on_process`` through Engine.receive; the file drop."""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from interface.config.channels import Channel
from interface.engine.destinations import drop_file, file_name, plain_key
from interface.engine.inbound import Engine
from interface.engine.outbound import AckReply, DownstreamUnavailable, OutboundWorker
from interface.engine.processing import Pipeline, Worker
from interface.hl7.errors import TransientError
from interface.mapping.loader import load_mappings
from interface.store import chart, chart_apply, chart_read
from interface.store.schema import messages, work_attempts, work_items, work_keys

from .conftest import Clock

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
_MAPPINGS = None


def mappings():
    global _MAPPINGS
    if _MAPPINGS is None:
        _MAPPINGS = load_mappings(ROOT / "mappings")
    return _MAPPINGS


def adt(
    cid: str,
    mrn: str | None = "M1",
    event: str = "A08",
    *,
    mrg: str | None = None,
    dob: str = "19800101",
    msh15: str = "",
    msh16: str = "",
) -> bytes:
    pid3 = f"{mrn}^^^HOSP^MR" if mrn else ""
    msh = f"MSH|^~\\&|REG|HOSP|INT|HOSP|20260301100000||ADT^{event}^ADT_A01|{cid}|P|2.5.1"
    if msh15 or msh16:
        msh += f"|||{msh15}|{msh16}"
    segs = [msh, f"EVN|{event}|20260301100000", f"PID|1||{pid3}||DOE^JANE||{dob}|F"]
    if mrg:
        segs.append(f"MRG|{mrg}^^^HOSP^MR")
    segs.append("PV1|1|I|W1^101^A^HOSP")
    return ("\r".join(segs) + "\r").encode()


def channel(destinations=(), *, mapping: str | None = "adt", **kw) -> Channel:
    return Channel(
        name=kw.pop("name", "adt"),
        listen="tcp:0",
        mapping=mapping,
        mrn={"authority": "HOSP", "types": ["MR"]},
        destinations=list(destinations),
        **kw,
    )


def mllp(name="lab", **kw) -> dict:
    return {"name": name, "type": "mllp", "host": "127.0.0.1", "port": 9, **kw}


class FakeSender:
    """A downstream double: ``answer(control_id) -> ACK code``, or raises to say unreachable."""

    def __init__(self, answer=lambda ctl: "AA"):
        self.answer = answer
        self.sent: list[str] = []

    def send(self, raw: bytes):
        ctl = raw.split(b"\r")[0].split(b"|")[9].decode()
        code = self.answer(ctl)
        if code is None:
            raise DownstreamUnavailable("cannot connect to 127.0.0.1:9: refused")
        self.sent.append(ctl)
        return AckReply(code, ctl, "", b"")

    def close(self):
        pass


class Rig:
    """Engine + store Worker + OutboundWorker on one channel, sharing an injected clock."""

    def __init__(self, db, ch: Channel, sender: FakeSender | None = None, *, seed: int = 1):
        self.db, self.ch = db, ch
        self.clock = Clock(NOW)
        self.pipeline = Pipeline([ch], mappings())
        self.worker = Worker(db, self.pipeline, clock=self.clock, rng=random.Random(seed))
        self.engine = Engine(db, clock=self.clock, processor=self.worker)
        self.sender = sender or FakeSender()
        self.out = OutboundWorker(
            db, self.pipeline, clock=self.clock, rng=random.Random(seed), sender_factory=lambda d: self.sender
        )

    def send(self, raw: bytes):
        return self.engine.receive(self.ch, raw)

    def drain(self) -> None:
        for _ in range(1000):
            if self.worker.run_once() + self.out.run_once() == 0:
                return
        raise AssertionError("did not drain")

    def items(self, destination: str | None = None) -> list:
        q = select(work_items, messages.c.control_id).join(messages, messages.c.id == work_items.c.message_id)
        if destination:
            q = q.where(work_items.c.destination == destination)
        with self.db.connect() as conn:
            return conn.execute(q.order_by(work_items.c.id)).all()

    def status(self, destination: str) -> dict[str, str]:
        return {r.control_id: r.status for r in self.items(destination)}


def test_one_item_per_destination_each_in_its_own_lane(engine):
    """Store items order by the patient key; every other destination by out:<channel>/<dest>|key."""
    rig = Rig(engine, channel([mllp(), {"name": "drop", "type": "file", "directory": "/nonexistent"}]))
    assert rig.send(adt("C1", "M1")).status == "accepted"
    items = rig.items()
    assert [(i.destination, i.key) for i in items] == [
        ("store", "mrn:M1"),
        ("lab", "out:adt/lab|mrn:M1"),
        ("drop", "out:adt/drop|mrn:M1"),
    ]
    assert {plain_key(i.key) for i in items} == {"mrn:M1"}


def test_merge_holds_both_keys_in_every_lane(engine):
    """A40: each destination's item holds the survivor's and the prior patient's key."""
    rig = Rig(engine, channel([mllp()], apply="queued"))  # inline, the store item is done at once
    rig.send(adt("C1", "M1", "A40", mrg="M2"))
    with engine.connect() as conn:
        keys = conn.execute(
            select(work_items.c.destination, work_keys.c.key).join(
                work_keys, work_keys.c.item_id == work_items.c.id
            )
        ).all()
    assert sorted(keys) == [
        ("lab", "out:adt/lab|mrn:M1"),
        ("lab", "out:adt/lab|mrn:M2"),
        ("store", "mrn:M1"),
        ("store", "mrn:M2"),
    ]


def test_order_by_channel_and_message(engine):
    """order_by: channel puts every message in one queue; message gives each its own key."""
    rig = Rig(engine, channel([mllp()], name="a", order_by="channel"))
    rig.send(adt("C1", "M1"))
    rig.send(adt("C2", "M2"))
    assert {i.key for i in rig.items("lab")} == {"out:a/lab|channel:a"}
    rig2 = Rig(engine, channel([mllp()], name="b", order_by="message"))
    rig2.send(adt("D1", "M1"))
    rig2.send(adt("D2", "M1"))
    assert [i.key for i in rig2.items("lab") if i.channel == "b"] == [
        "out:b/lab|msg:b:REG:D1",
        "out:b/lab|msg:b:REG:D2",
    ]


def test_downstream_outage_blocks_only_that_destination(engine):
    """The MLLP peer is down: the store keeps applying every message; the peer's items wait in
    order and are delivered in order once it is back."""
    up = {"v": False}
    rig = Rig(
        engine,
        channel([mllp(retry={"initial_delay_seconds": 5, "jitter": 0})]),
        FakeSender(lambda ctl: "AA" if up["v"] else None),
    )
    for cid, mrn in (("A1", "M1"), ("A2", "M1"), ("B1", "M2"), ("A3", "M1")):
        rig.send(adt(cid, mrn))
    rig.drain()
    assert set(rig.status("store").values()) == {"done"}
    assert set(rig.status("lab").values()) == {"pending"}
    assert rig.sender.sent == []
    # each key's head was tried once and backs off; the items behind it were never tried
    assert {i.control_id: i.attempts for i in rig.items("lab")} == {"A1": 1, "A2": 0, "B1": 1, "A3": 0}
    up["v"] = True
    rig.clock.advance(10)
    rig.drain()
    assert set(rig.status("lab").values()) == {"done"}
    sent = rig.sender.sent
    assert [c for c in sent if c.startswith("A")] == ["A1", "A2", "A3"]
    assert "B1" in sent


def test_refused_message_blocks_only_its_own_key_and_lane(engine):
    """AR from the peer for one message: that item goes to the error queue and holds its
    patient's later items for that destination only; other patients and the store flow."""
    rig = Rig(engine, channel([mllp()]), FakeSender(lambda ctl: "AR" if ctl == "A1" else "AA"))
    for cid, mrn in (("A1", "M1"), ("A2", "M1"), ("B1", "M2")):
        rig.send(adt(cid, mrn))
    rig.drain()
    assert rig.status("store") == {"A1": "done", "A2": "done", "B1": "done"}
    assert rig.status("lab") == {"A1": "error", "A2": "pending", "B1": "done"}
    err = rig.items("lab")[0]
    assert err.reason == "downstream_refused" and "AR" in err.last_error
    assert rig.sender.sent == ["A1", "B1"]


def test_on_process_acks_after_the_chart_write(engine):
    """ack: on_process: AA only once the chart is written, in the same call to receive."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    out = rig.send(adt("C1", "M7", "A01"))
    assert out.status == "processed" and b"MSA|AA|C1" in out.ack
    with engine.connect() as conn:
        assert chart_read.get_chart(conn, "M7")["mrn"] == "M7"
    assert rig.status("store") == {"C1": "done"}


def test_on_process_mapping_error_is_ae_with_err_at_the_field(engine):
    """A mapping error with on_process comes back as AE with ERR-2 at the field, and the item is
    in the error queue with that location."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    out = rig.send(adt("C2", "M8", "A01", dob="1980XX01"))
    assert out.status == "error"
    segs = out.ack.decode().split("\r")
    assert segs[1].startswith("MSA|AE|C2|")
    err = segs[2].split("|")
    assert err[2] == "PID^1^7^1" and err[3].startswith("102^")
    item = rig.items("store")[0]
    assert (item.status, item.reason, item.error_location) == ("error", "invalid_value", "PID-7")
    out = rig.send(adt("C3", None, "A01"))
    err = out.ack.decode().split("\r")[2].split("|")
    assert out.ack_code == "AE" and err[2] == "PID^1^3" and err[3].startswith("101^")


def test_on_process_does_not_wait_for_outbound(engine):
    """on_process applies the store synchronously; the MLLP item stays queued for its worker."""
    rig = Rig(engine, channel([mllp()], ack={"when": "on_process"}))
    out = rig.send(adt("C1", "M1", "A01"))
    assert out.status == "processed" and out.ack_code == "AA"
    assert rig.status("lab") == {"C1": "pending"} and rig.sender.sent == []


def test_on_commit_acks_once_stored(engine):
    """ack: on_commit (default) with ``apply: queued``: AA once stored; nothing is applied yet."""
    rig = Rig(engine, channel(apply="queued"))
    out = rig.send(adt("C1", "M1", "A01"))
    assert out.status == "accepted" and out.ack_code == "AA"
    assert rig.status("store") == {"C1": "pending"}


def test_on_commit_applies_inline_what_is_first_in_line(engine):
    """``apply: inline`` (the default): the store item is applied in the journal's transaction;
    a message behind an earlier queued one for the same patient stays queued, and an outbound
    destination is never delivered inline."""
    rig = Rig(engine, channel([mllp()]))
    out = rig.send(adt("C1", "M1", "A01"))
    assert out.ack_code == "AA" and rig.status("store") == {"C1": "done"}
    assert rig.status("lab") == {"C1": "pending"}
    assert out.status == "accepted"  # the outbound item is still to do
    only_store = Rig(engine, channel(name="s"))
    out = only_store.send(adt("S1", "M9", "A01"))
    assert (out.status, out.ack_code) == ("processed", "AA")


def test_file_destination_writes_whole_files_named_by_pattern(engine, tmp_path):
    """File drop: one file per message, named by the pattern, bytes as received, no temp files."""
    d = tmp_path / "out"
    rig = Rig(
        engine,
        channel(
            [
                {
                    "name": "drop",
                    "type": "file",
                    "directory": str(d),
                    "filename": "{destination}_{control_id}_{message_type}.hl7",
                }
            ]
        ),
    )
    raws = {cid: adt(cid, "M1") for cid in ("F1", "../F2")}
    for raw in raws.values():
        rig.send(raw)
    rig.drain()
    assert sorted(os.listdir(d)) == ["drop_F1_ADT_A08.hl7", "drop__F2_ADT_A08.hl7"]
    assert (d / "drop_F1_ADT_A08.hl7").read_bytes() == raws["F1"]
    assert (d / "drop__F2_ADT_A08.hl7").read_bytes() == raws["../F2"]
    assert set(rig.status("drop").values()) == {"done"}


def test_file_name_is_always_inside_the_directory():
    """Values cannot add path separators; an empty value becomes '_'."""
    assert file_name("{control_id}.hl7", {"control_id": "../../etc/passwd"}) == "_.._etc_passwd.hl7"
    assert file_name("{control_id}", {"control_id": ""}) == "_"


def test_unwritable_directory_is_transient(engine, tmp_path):
    """A file destination that cannot write retries (TransientError) and keeps its order."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    try:
        drop_file(blocker / "sub", "a.hl7", b"x")
    except TransientError as exc:
        assert "cannot write" in str(exc)
    else:
        raise AssertionError("expected TransientError")
    rig = Rig(
        engine,
        channel(
            [
                {
                    "name": "drop",
                    "type": "file",
                    "directory": str(blocker / "sub"),
                    "retry": {"max_attempts": 2, "jitter": 0},
                }
            ]
        ),
    )
    rig.send(adt("F1", "M1"))
    rig.drain()
    assert rig.status("drop") == {"F1": "pending"}
    rig.clock.advance(5)
    rig.drain()
    item = rig.items("drop")[0]
    assert (item.status, item.reason, item.attempts) == ("error", "downstream_unavailable", 2)
    with engine.connect() as conn:
        hist = (
            conn.execute(
                select(work_attempts.c.outcome)
                .where(work_attempts.c.item_id == item.id)
                .order_by(work_attempts.c.id)
            )
            .scalars()
            .all()
        )
    assert hist == ["retry", "error"]


def test_destination_config_is_checked_at_load(tmp_path):
    """Bad filename patterns, a reserved name and missing keys are file:line errors at load."""
    from interface.config.channels import load_channels
    from interface.config.yamlfile import ConfigError

    (tmp_path / "c.yaml").write_text(
        "name: c\nlisten: tcp:0\ndestinations:\n"
        "  - {name: a, type: file, directory: /x, filename: '{patient}.hl7'}\n"
        "  - {name: b, type: file, directory: /x, filename: 'sub/{control_id}'}\n"
        "  - {name: application_ack, type: mllp, host: h, port: 1}\n"
        "  - {name: d, type: mllp, host: h}\n"
    )
    try:
        load_channels(tmp_path)
    except ConfigError as exc:
        text = "\n".join(exc.problems)
    else:
        raise AssertionError("expected ConfigError")
    assert "c.yaml:4" in text and "{patient}" in text
    assert "c.yaml:5" in text and "path separator" in text
    assert "needs 'host' and 'port'" in text
    (tmp_path / "c.yaml").write_text(
        "name: c\nlisten: tcp:0\ndestinations:\n  - {name: application_ack, type: file, directory: /x}\n"
    )
    try:
        load_channels(tmp_path)
    except ConfigError as exc:
        assert "reserved" in "\n".join(exc.problems)
    else:
        raise AssertionError("expected ConfigError")


def test_transient_store_failure_retries_on_the_destination_policy(engine, monkeypatch):
    """A transient failure retries after the destination's policy delay (its own retry beats
    the channel's), with jitter from the injected RNG; it holds only its own patient."""
    from interface.store import chart as chart_mod
    from interface.store import chart_apply, chart_read
    from interface.store.workqueue import RetryPolicy

    real = chart_apply.apply_updates
    fail = {"M1": 2}

    def flaky(conn, updates, **kw):
        mrn = updates[0].mrn if updates else None
        if fail.get(mrn):
            fail[mrn] -= 1
            raise TransientError("database busy")
        return real(conn, updates, **kw)

    monkeypatch.setattr(chart_apply, "apply_updates", flaky)
    ch = Channel(
        name="adt",
        listen="tcp:0",
        mrn={"authority": "HOSP"},
        retry={"initial_delay_seconds": 100},
        destinations=[
            {
                "name": "store",
                "type": "store",
                "mapping": "adt",
                "retry": {"initial_delay_seconds": 4, "factor": 3, "jitter": 0.5},
            }
        ],
    )
    rig = Rig(engine, ch, seed=42)
    rig.send(adt("A1", "M1", "A01"))
    rig.send(adt("A2", "M1", "A08"))
    rig.send(adt("B1", "M2", "A01"))
    rig.drain()
    assert rig.status("store") == {"A1": "pending", "A2": "pending", "B1": "done"}
    policy = RetryPolicy(4, 3, 0.5, 300, 10)
    expect = random.Random(42)
    first = policy.delay(1, expect)
    item = rig.items("store")[0]
    at = (
        item.next_attempt_at
        if item.next_attempt_at.tzinfo
        else item.next_attempt_at.replace(tzinfo=timezone.utc)
    )
    assert abs((at - NOW).total_seconds() - first) < 1e-3 and 2 <= first <= 6
    rig.clock.advance(first)
    rig.drain()
    second = policy.delay(2, expect)
    assert rig.items("store")[0].attempts == 2 and 6 <= second <= 18
    rig.clock.advance(second)
    rig.drain()
    assert rig.status("store") == {"A1": "done", "A2": "done", "B1": "done"}
