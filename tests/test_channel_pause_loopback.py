"""Pausing a channel over real MLLP on loopback (issue 19): ``interface run`` in its own process,
the pause made from another (``interface channels pause`` / the desk function on the same
database, as the console running as ``interface web`` would). While paused, a sender on an open
connection gets AE with the reason and nothing is stored, a new connection is refused; after
resume, AA again. The endpoint the engine bound (``--listen`` override, port 0) is the one the
console reads.

Each wait is on a condition the engine publishes (``channel_listeners.paused``), with a deadline.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from interface.engine.client import MLLPClient, parse_ack
from interface.ops.channels_cli import cli_main
from interface.store import channel_controls
from tests.test_loopback import EngineProcess, shared_db, stored  # noqa: F401  (fixture)
from tests.test_web_api import adt

DEADLINE = 20.0


@pytest.fixture(scope="module")
def engine_process(shared_db, tmp_path_factory):  # noqa: F811
    listen = {name: "tcp:0:interface=127.0.0.1" for name in ("adt", "mdm", "siu")}
    with EngineProcess(tmp_path_factory.mktemp("engine"), shared_db[0], listen=listen) as p:
        yield p


def wait_for(engine, what, check) -> list:
    """Poll the listeners table (written by the engine process) until ``check`` holds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with engine.connect() as conn:
            rows = channel_controls.listeners(conn, datetime.now(timezone.utc))
        if check(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"engine did not report {what}: {rows}")
        time.sleep(0.05)  # polling another process's published state, with a deadline


def adt_rows(rows):
    return [r for r in rows if r.channel == "adt"]


def code(ack: bytes | None) -> str | None:
    return None if ack is None else parse_ack(ack)[0]


def refused(port: int) -> bool:
    """A new connection is closed by the engine before any ACK: the send gets no answer."""
    try:
        with MLLPClient("127.0.0.1", port, timeout=10) as c:
            return c.send_raw(adt("PZ-NEW", "100001")) is None
    except (ConnectionError, OSError):
        return True


def test_the_bound_endpoint_with_its_listen_override_is_published(engine_process, shared_db):  # noqa: F811
    engine = shared_db[1]
    rows = wait_for(engine, "its adt endpoint", lambda rows: adt_rows(rows))
    (row,) = adt_rows(rows)
    assert row.endpoint == "tcp:0:interface=127.0.0.1"  # the --listen override, not the file's 2575
    assert row.port == engine_process.ports["adt"] and row.port != 2575
    assert row.host == "127.0.0.1"


def test_a_paused_channel_never_acks_positively_and_acks_again_after_resume(engine_process, shared_db):  # noqa: F811
    engine = shared_db[1]
    port = engine_process.ports["adt"]
    wait_for(engine, "its adt endpoint", lambda rows: adt_rows(rows))
    with MLLPClient("127.0.0.1", port, timeout=20) as open_conn:
        assert code(open_conn.send_raw(adt("PZ-1", "100001"))) == "AA"

        assert cli_main(["pause", "adt", "--reason", "downtime", "--user", "ana"], engine) == 0
        rows = wait_for(engine, "the pause", lambda rows: all(r.paused for r in adt_rows(rows)))
        assert not any(r.paused for r in rows if r.channel == "mdm")  # only that channel

        ack = open_conn.send_raw(adt("PZ-2", "100001"))  # the connection opened before the pause
        assert code(ack) in ("AE", "CE"), ack
        assert b"paused" in ack and b"207" in ack
        assert not stored(engine, "PZ-2")  # nothing stored: the sender keeps it and resends
        assert refused(port)  # a new connection is refused

        assert cli_main(["resume", "adt", "--user", "ana"], engine) == 0
        wait_for(engine, "the resume", lambda rows: not any(r.paused for r in adt_rows(rows)))
        assert code(open_conn.send_raw(adt("PZ-2", "100001"))) == "AA"  # the resend is accepted
    with MLLPClient("127.0.0.1", port, timeout=20) as c:
        assert code(c.send_raw(adt("PZ-3", "100001"))) == "AA"
    assert [m["control_id"] for m in stored(engine, "PZ-1", "PZ-2", "PZ-3")] == ["PZ-1", "PZ-2", "PZ-3"]
    assert "channel=adt event=refused_paused" in engine_process.output()
