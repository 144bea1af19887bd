"""Channels sharing one listen endpoint under `interface reload`, in one process and under
`interface run --workers 2` (one shared socket per endpoint, handed to every child): a changed
match: and a channel joining the endpoint take effect, and each message lands in its channel."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from interface.engine.client import MLLPClient
from interface.store.db import make_engine
from interface.store.schema import messages

from .conftest import ROOT

PYTHON = sys.executable
TIMEOUT = 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _channel(chdir: Path, name: str, ep: str, apps: list[str]) -> None:
    (chdir / f"{name}.yaml").write_text(
        f"name: {name}\nlisten: {ep}\nmapping: adt\nmrn: {{authority: HOSP, types: [MR]}}\n"
        f"match: {{sending_application: [{', '.join(apps)}]}}\nidentity: {{application: {name.upper()}}}\n"
    )


def _msg(ctl: str, app: str) -> bytes:
    return (
        f"MSH|^~\\&|{app}|HOSP|INT|HOSP|20260311103000||ADT^A08^ADT_A01|{ctl}|P|2.5.1\r"
        f"EVN|A08|20260311103000\rPID|1||{ctl}^^^HOSP^MR||DOE^JANE||19800101|F\r"
    ).encode()


def _wait(predicate, what: str, log):
    deadline = time.monotonic() + 2 * TIMEOUT
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)  # polling a real subprocess, with a deadline
    raise AssertionError(
        f"timed out waiting for {what}; log:\n{Path(log).read_text(errors='replace')[-3000:]}"
    )


def _ready(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _send(port: int, ctl: str, app: str) -> list[str]:
    with MLLPClient("127.0.0.1", port, timeout=TIMEOUT) as c:
        ack = c.send_raw(_msg(ctl, app))
    return ack.decode().split("\r")[0].split("|")[2:3] + ack.decode().split("\r")[1].split("|")[1:2]


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers-2"])
def test_shared_endpoint_routes_and_reloads(tmp_path, db_url, workers):
    """a (REG) and b (LAB) share a port: each message goes to its channel and is ACKed with
    that channel's identity. A reload that moves b to LIS and adds c (PAS) on the same port:
    LIS goes to b, PAS to c, REG still to a, LAB is refused (AR) — one process or two."""
    chdir = tmp_path / "channels"
    chdir.mkdir()
    ep = f"tcp:{_free_port()}:interface=127.0.0.1"
    _channel(chdir, "a", ep, ["REG"])
    _channel(chdir, "b", ep, ["LAB"])
    ready, log = tmp_path / "ready.json", tmp_path / "engine.log"
    var = tmp_path / "var"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "interface.ops.cli",
                "run",
                *workers,
                "--no-web",
                "--channels",
                str(chdir),
                "--mappings",
                str(ROOT / "mappings"),
                "--db",
                db_url,
                "--var",
                str(var),
                "--ready-file",
                str(ready),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        doc = _wait(
            lambda: (d := _ready(ready)) and (not workers or len(d.get("workers", [])) == 2) and d,
            "the ready file",
            log,
        )
        port = doc["ports"]["a"]
        assert doc["ports"]["b"] == port
        assert _send(port, "X1", "REG") == ["A", "AA"]
        assert _send(port, "X2", "LAB") == ["B", "AA"]
        _channel(chdir, "b", ep, ["LIS"])
        _channel(chdir, "c", ep, ["PAS"])
        before = ready.stat().st_mtime_ns
        r = subprocess.run(
            [PYTHON, "-m", "interface.ops.cli", "reload", "--var", str(var), "--timeout", str(2 * TIMEOUT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3 * TIMEOUT,
        )
        assert r.returncode == 0, (r.stdout, r.stderr, log.read_text()[-3000:])
        assert "added: c" in r.stdout and "changed: b" in r.stdout
        _wait(
            lambda: ready.stat().st_mtime_ns != before and (d := _ready(ready)) and "c" in d["ports"],
            "reload",
            log,
        )
        assert _ready(ready)["ports"]["c"] == port
        assert _send(port, "X3", "LIS") == ["B", "AA"]
        assert _send(port, "X4", "PAS") == ["C", "AA"]
        assert _send(port, "X5", "REG") == ["A", "AA"]
        assert _send(port, "X6", "LAB")[1] == "AR"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    db = (
        create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        if db_url.startswith("postgresql")
        else make_engine(db_url)
    )
    with db.connect() as conn:
        rows = dict(
            conn.execute(
                select(messages.c.control_id, messages.c.channel).where(messages.c.control_id.like("X%"))
            ).all()
        )
    db.dispose()
    assert rows == {"X1": "a", "X2": "b", "X3": "b", "X4": "c", "X5": "a", "X6": "a"}
