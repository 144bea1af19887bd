"""Routing by sender and receiver (``match:``), the channel's identity in its ACKs, and what
``interface check`` refuses about channels sharing one listen endpoint; plus the connection
relay's fallbacks when the sender's connection is gone (return address, or undeliverable)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from interface.config.channels import load_channels
from interface.config.routing import Router, endpoint_groups, peek_header
from interface.engine.connection_acks import ConnectionAckRelay, asks_for_application_ack
from interface.hl7.errors import ConfigError
from interface.ops.reload import diff_channels, listener_changes
from interface.store.schema import messages
from tests.test_destinations import Rig, adt, channel


def _write(d: Path, name: str, body: str) -> Path:
    p = d / f"{name}.yaml"
    p.write_text(f"name: {name}\n{body}")
    return p


def _problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_channels(d)
    return exc.value.problems


def test_check_refuses_overlapping_channels_on_one_endpoint_with_file_and_line(tmp_path):
    """Two channels on one endpoint that could take the same message (a shared MSH-3 value, the
    other fields open) are refused at the second one's match: line, naming the first."""
    _write(tmp_path, "a", "listen: tcp:3100\nmatch: {sending_application: [REG, PAS]}\n")
    b = _write(tmp_path, "b", "listen: tcp:3100\ndescription: x\nmatch:\n  sending_application: [PAS]\n")
    problems = _problems(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{b}:4: port 3100 already used by ")
    assert "channels a and b could both take the same message" in problems[0] and "a.yaml:3" in problems[0]


def test_check_refuses_a_channel_without_match_and_differing_listener_settings(tmp_path):
    """On a shared endpoint every channel needs a match: block, and tls/limits must be the
    same (they belong to the listener); disjoint matches on other fields are fine."""
    _write(tmp_path, "a", "listen: tcp:3101\nmatch: {sending_application: [REG]}\n")
    b = _write(
        tmp_path,
        "b",
        "listen: tcp:3101\nlimits: {max_connections: 5}\n"
        "match: {sending_application: [REG], receiving_facility: [LAB]}\n",
    )
    _write(tmp_path, "c", "listen: tcp:3101\nmatch: {sending_application: [LIS]}\n")  # disjoint from a
    problems = _problems(tmp_path)
    assert any(p.startswith(f"{b}:3: limits differs from ") for p in problems), problems
    assert any(p.startswith(f"{b}:4: port 3101") for p in problems), problems  # REG overlaps a
    (tmp_path / "b.yaml").write_text("name: b\nlisten: tcp:3101\nmatch: {sending_application: [PAS]}\n")
    assert len(load_channels(tmp_path)) == 3
    (tmp_path / "d.yaml").write_text("name: d\nlisten: tcp:3101\n")
    assert any(p.startswith(f"{tmp_path / 'd.yaml'}:2: port 3101 already used") for p in _problems(tmp_path))


def test_router_picks_by_msh3_to_msh6_and_allowlist():
    """The frame's MSH-3 (whole HD or namespace id) picks the channel; MSH-5/6 too; a sender
    address outside a channel's allow: list never goes to it; no match: the first channel."""
    a = channel(name="a", match={"sending_application": ["REG"]})
    b = channel(name="b", match={"sending_application": ["LAB"], "receiving_facility": ["EAST"]})
    c = channel(
        name="c", match={"sending_application": ["LAB"], "receiving_facility": ["WEST"]}, allow=["10.0.0.0/8"]
    )
    r = Router([a, b, c])
    msg = "MSH|^~\\&|{app}|H|INT|{fac}|1||ADT^A01|1|P|2.5.1\r".format
    assert r.select(msg(app="REG^1.2^ISO", fac="X").encode(), "127.0.0.1") is a
    assert r.select(msg(app="LAB", fac="EAST").encode(), "127.0.0.1") is b
    assert r.select(msg(app="LAB", fac="WEST").encode(), "10.1.2.3") is c
    assert r.select(msg(app="LAB", fac="WEST").encode(), "127.0.0.1") is a  # c not allowed: refused by a
    assert r.select(b"garbage", "127.0.0.1") is a
    assert r.allows("10.1.2.3") and r.allows("127.0.0.1")
    assert peek_header(b"  \x0bMSH#$*!@#APP$X#F#R#RF#1\r") == (("APP$X", "F", "R", "RF"), "$")


def test_endpoint_groups_share_fixed_ports_only():
    """Channels with one listen string share a listener; port 0 always gets its own."""
    a = channel(name="a", match={"sending_application": ["A"]}).model_copy(update={"listen": "tcp:3200"})
    b = channel(name="b", match={"sending_application": ["B"]}).model_copy(update={"listen": "tcp:3200"})
    z1, z2 = channel(name="z1"), channel(name="z2")
    groups = endpoint_groups([a, z1, b, z2])
    assert {k: [c.name for c in v] for k, v in groups.items()} == {
        "tcp:3200": ["a", "b"],
        "channel:z1": ["z1"],
        "channel:z2": ["z2"],
    }


def test_reload_restarts_a_shared_listener_when_one_of_its_channels_changes():
    """listener_changes: a changed match in one channel restarts its endpoint's listener (both
    channels), an untouched endpoint keeps its connections; a channel joining restarts it."""
    mk = lambda n, ep, app: channel(name=n, match={"sending_application": [app]}).model_copy(
        update={"listen": ep}
    )  # noqa: E731
    old = {c.name: c for c in (mk("a", "tcp:3300", "A"), mk("b", "tcp:3300", "B"), mk("c", "tcp:3301", "C"))}
    new = dict(old, b=mk("b", "tcp:3300", "B2"))
    _, _, restart = listener_changes(diff_channels(old.values(), new.values()), old, new)
    assert restart == ["tcp:3300"]
    joined = dict(old, d=mk("d", "tcp:3301", "D"))
    _, groups, restart = listener_changes(diff_channels(old.values(), joined.values()), old, joined)
    assert restart == ["tcp:3301"] and [c.name for c in groups["tcp:3301"]] == ["c", "d"]


def test_refusals_stored_and_default_ack_identity_echoes_msh5_msh6(engine):
    """Without identity:, an ACK's MSH-3/MSH-4 echo the message's MSH-5/MSH-6; a match: that
    refuses the sender is AR with ERR-3 103 at MSH-3, and the message is stored as rejected."""
    rig = Rig(engine, channel(match={"sending_application": ["OTHER"]}))
    out = rig.send(adt("R1", "M1"))
    segs = [s.split("|") for s in out.ack.decode().split("\r") if s]
    assert segs[0][2:6] == ["INT", "HOSP", "REG", "HOSP"] and segs[1][:2] == ["MSA", "AR"]
    assert segs[2][2] == "MSH^1^3" and segs[2][3].startswith("103^")
    with engine.connect() as conn:
        row = conn.execute(
            select(messages.c.status, messages.c.error_text).where(messages.c.control_id == "R1")
        ).one()
    assert row.status == "rejected" and "'REG'" in row.error_text


def test_batch_ack_header_carries_the_channel_identity(engine):
    """A framed FHS/BHS batch on a channel with identity: BHS-3/BHS-4 and each ACK's MSH-3/4
    are the channel's application and facility."""
    rig = Rig(engine, channel(identity={"application": "INT", "facility": "EAST"}))
    body = adt("B1", "M1") + adt("B2", "M2")
    batch = b"FHS|^~\\&|REG|HOSP\rBHS|^~\\&|REG|HOSP\r" + body + b"BTS|2\rFTS|1\r"
    out = rig.send(batch)
    segs = [s.split("|") for s in out.ack.decode().split("\r") if s]
    assert segs[0][:4] == ["BHS", "^~\\&", "INT", "EAST"]
    assert [s[2:4] for s in segs if s[0] == "MSH"] == [["INT", "EAST"], ["INT", "EAST"]]


class _Proto:
    def __init__(self):
        self.closed, self.peer, self.transport = False, "127.0.0.1:5", None


class _Factory:
    def __init__(self, *protos):
        self.protocols = set(protos)


def _relay_rig(engine, **ack):
    rig = Rig(engine, channel(ack={"same_connection": True, "same_connection_timeout_seconds": 60, **ack}))
    relay = ConnectionAckRelay(
        engine,
        rig.pipeline,
        clock=rig.clock,
        call=lambda f, *a: f(*a),
        monotonic=lambda: rig.clock.now.timestamp(),
    )
    return rig, relay


def test_application_ack_for_a_gone_connection_without_return_address_is_undeliverable(engine):
    """same_connection without a return address, the connection closed before the ACK: the
    application ACK is kept and goes to the error queue with reason undeliverable."""
    rig, relay = _relay_rig(engine)
    proto = _Proto()
    raw = adt("C1", "M1", "A01", msh15="AL", msh16="AL")
    assert relay.wanted(rig.ch, raw) and not relay.wanted(rig.ch, adt("C2", "M1"))
    out = rig.send(raw)
    proto.closed = True  # gone before the listener registered it
    relay.expect(out, _Factory(proto), proto.peer)
    rig.drain()
    assert relay.run_once() >= 1
    item = rig.items("connection_ack")[0]
    assert (item.status, item.reason) == ("error", "undeliverable")
    assert relay.undeliverable == 1 and relay.sent == 0


def test_application_ack_with_no_process_waiting_moves_on_after_the_timeout(engine):
    """An application ACK whose connection's process died (nobody waits for it) is sent to the
    return address once same_connection_timeout_seconds have passed, with MSH-15 AL."""
    rig, relay = _relay_rig(engine, application_ack={"host": "127.0.0.1", "port": 9})
    rig.send(adt("C1", "M1", "A01", msh15="AL", msh16="AL"))
    rig.worker.run_once()
    relay.run_once()
    assert [i.destination for i in rig.items()][-1] == "connection_ack"
    rig.clock.advance(61)
    relay._last_sweep = float("-inf")
    relay.run_once()
    item = rig.items()[-1]
    assert (item.destination, item.status) == ("application_ack", "pending")
    assert item.key == "out:adt/application_ack|mrn:M1"
    with engine.connect() as conn:
        raw = conn.execute(select(messages.c.raw).where(messages.c.id == item.message_id)).scalar_one()
    assert raw.split(b"\r")[0].split(b"|")[14] == b"AL"
    rig.drain()
    assert rig.items()[-1].status == "done" and len(rig.sender.sent) == 1


def test_asks_for_application_ack_reads_msh16():
    """MSH-16 AL/ER/SU ask for an application ACK; NE, empty or missing do not."""
    base = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5.1|||AL|{}\r"
    assert [asks_for_application_ack(base.format(v).encode()) for v in ("AL", "ER", "su", "NE", "")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert not asks_for_application_ack(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5.1\r")


def test_reload_sees_every_new_channel_setting_as_a_change():
    """diff_channels compares whole definitions: match, identity, per-mode ACK timing,
    same_connection, fallback_charset and expect_ack each make a channel "changed"."""
    base = channel()
    for change in (
        {"match": {"sending_application": ["REG"]}},
        {"identity": {"application": "INT"}},
        {"ack": {"enhanced": "on_process"}},
        {"ack": {"same_connection": True}},
        {"fallback_charset": "8859/15"},
    ):
        other = channel(**change)
        assert diff_channels([base], [other]).changed == ["adt"], change
    assert diff_channels([base], [channel()]).unchanged == ["adt"]
    ret = {"host": "h", "port": 1}
    assert diff_channels(
        [channel(ack={"application_ack": ret})],
        [channel(ack={"application_ack": {**ret, "expect_ack": False}})],
    ).changed == ["adt"]
