"""`interface run --workers N` reloads added, removed and moved channels: the supervisor binds the
new sockets, replaces its children one at a time, then closes the sockets nobody listens on.

One real supervisor on 127.0.0.1 port 0 with two children: a channel is added (its port answers
AA), the first one is removed while a sender keeps sending on the other (its port then refuses;
every ACKed message is stored), a broken channel file and a port already taken are rejected
with nothing restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from interface.engine.client import MLLPClient
from interface.store.db import make_engine
from interface.store.schema import events, messages

from .conftest import ROOT
from .test_cluster import _ready
from .test_cluster import _wait as _wait_until

PYTHON = sys.executable
TIMEOUT = 30.0

A08 = (
    "MSH|^~\\&|REG|HOSP|INTERFACE|HOSP|20260311103000||ADT^A08^ADT_A01|{ctl}|P|2.5.1\r"
    "EVN|A08|20260311103000\rPID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800101|F\r"
)


def _channel(chdir: Path, name: str, listen: str = "tcp:0:interface=127.0.0.1") -> Path:
    text = (ROOT / "channels" / "adt.yaml").read_text().replace("name: adt", f"name: {name}")
    text = "\n".join(
        f"listen: {listen}" if line.startswith("listen:") else line for line in text.splitlines()
    )
    path = chdir / f"{name}.yaml"
    path.write_text(text + "\n")
    return path


def _wait(predicate, what: str, log: Path):
    """tests.test_cluster's wait, with the engine log's tail when it times out."""
    try:
        return _wait_until(predicate, TIMEOUT, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; log:\n{log.read_text(errors='replace')[-3000:]}") from None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _web_ok(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=TIMEOUT) as r:
        return r.status == 200


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _reload(var: Path) -> subprocess.CompletedProcess:
    # a rolling restart starts two engine processes one after the other: more room on a busy machine
    return subprocess.run(
        [PYTHON, "-m", "interface.ops.cli", "reload", "--var", str(var), "--timeout", str(2 * TIMEOUT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2 * TIMEOUT + 10,
    )


def _db(db_url: str):
    if db_url.startswith("postgresql"):
        return create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    return make_engine(db_url)


class _Sender(threading.Thread):
    """Sends one A08 after another on a channel, resending on a dropped connection (as MLLP
    senders do) until each is answered; remembers what was ACKed."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.acked, self.problems = port, [], []
        self.halt = threading.Event()

    def run(self):
        client = MLLPClient("127.0.0.1", self.port, timeout=TIMEOUT)
        n = 0
        try:
            while not self.halt.is_set():
                ctl = f"RL{n}"
                deadline = time.monotonic() + TIMEOUT
                while True:
                    try:
                        r = client.send(A08.format(ctl=ctl, mrn=f"R{n % 5}").encode())
                    except OSError as exc:  # refused while reconnecting: try again
                        r = None
                        why = str(exc)
                    if r is not None and r.code != "--":
                        break
                    if time.monotonic() > deadline:
                        self.problems.append(f"{ctl}: no ACK ({r.text if r else why})")
                        return
                    client.close()
                if r.code != "AA":
                    self.problems.append(f"{ctl}: {r.code} {r.text}")
                self.acked.append(ctl)
                n += 1
        finally:
            client.close()


def test_workers_reload_adds_removes_and_rejects_channels(tmp_path, db_url):
    chdir = tmp_path / "channels"
    chdir.mkdir()
    _channel(chdir, "first")
    ready, var, log = tmp_path / "ready.json", tmp_path / "var", tmp_path / "engine.log"
    out = open(log, "wb")
    env = dict(os.environ)
    env.pop("INTERFACE_DB_URL", None)
    web = _free_port()  # a fixed web port: child 0's old process lets go of it before the new one binds
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "interface.ops.cli",
            "run",
            "--workers",
            "2",
            "--web",
            f"127.0.0.1:{web}",
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
        env=env,
    )
    sender = None
    try:
        doc = _wait(lambda: (d := _ready(ready)) and len(d["workers"]) == 2 and d, "the ready file", log)
        first_port, gen0 = doc["ports"]["first"], doc["workers"]
        assert list(doc["ports"]) == ["first"]
        with MLLPClient("127.0.0.1", first_port, timeout=TIMEOUT) as c:
            assert c.send(A08.format(ctl="F1", mrn="M1").encode()).code == "AA"

        # a channel is added: new sockets, every child replaced, the old port kept
        _channel(chdir, "second")
        r = _reload(var)
        assert r.returncode == 0 and "reloaded: added: second" in r.stdout, (r, log.read_text())
        doc = _wait(lambda: (d := _ready(ready)) and "second" in d["ports"] and d, "the new port", log)
        second_port, gen1 = doc["ports"]["second"], doc["workers"]
        assert doc["ports"]["first"] == first_port and second_port != first_port
        assert len(gen1) == 2 and not set(gen1) & set(gen0) and not any(_alive(p) for p in gen0)
        assert doc["web_port"] == web and _web_ok(web)
        with MLLPClient("127.0.0.1", second_port, timeout=TIMEOUT) as c:
            assert c.send(A08.format(ctl="S1", mrn="M2").encode()).code == "AA"
        with MLLPClient("127.0.0.1", first_port, timeout=TIMEOUT) as c:
            assert c.send(A08.format(ctl="F2", mrn="M1").encode()).code == "AA"

        # the first channel is removed while a sender keeps sending on the second
        sender = _Sender(second_port)
        sender.start()
        _wait(lambda: len(sender.acked) >= 3, "the sender's first ACKs", log)
        (chdir / "first.yaml").unlink()
        r = _reload(var)
        assert r.returncode == 0 and "reloaded: removed: first" in r.stdout, (r, log.read_text())
        before = len(sender.acked)
        _wait(lambda: len(sender.acked) >= before + 3, "ACKs after the reload", log)
        sender.halt.set()
        sender.join(TIMEOUT)
        assert not sender.is_alive() and sender.problems == [], sender.problems
        doc = _ready(ready)
        assert doc["ports"] == {"second": second_port} and not set(doc["workers"]) & set(gen1)
        gen2 = doc["workers"]
        assert _refused(first_port), "the removed channel's port still accepts connections"
        eng = _db(db_url)
        try:
            with eng.connect() as conn:  # every ACKed message was stored
                stored = {row.control_id for row in conn.execute(select(messages.c.control_id))}
            assert set(sender.acked) <= stored, set(sender.acked) - stored
        finally:
            eng.dispose()

        # a broken channel file: rejected, nothing restarted, still serving
        bad = chdir / "third.yaml"
        bad.write_text("name: third\nlisten: tcp:0:interface=127.0.0.1\naccept: 12\n")
        r = _reload(var)
        assert r.returncode == 1 and "rejected" in r.stderr and f"{bad}:" in r.stderr, r
        bad.unlink()

        # a new endpoint on a port already taken: rejected naming channel and endpoint
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            busy = taken.getsockname()[1]
            _channel(chdir, "third", f"tcp:{busy}:interface=127.0.0.1")
            r = _reload(var)
        assert (
            r.returncode == 1
            and f"channel third: cannot listen on tcp:{busy}:interface=127.0.0.1" in r.stderr
        ), r
        doc = _ready(ready)
        assert doc["ports"] == {"second": second_port} and doc["workers"] == gen2
        assert all(_alive(p) for p in gen2)
        with MLLPClient("127.0.0.1", second_port, timeout=TIMEOUT) as c:
            assert c.send(A08.format(ctl="S2", mrn="M2").encode()).code == "AA"
        (chdir / "third.yaml").unlink()

        # the second channel moves to another port: the old one closes once its children are gone
        moved = _free_port()
        _channel(chdir, "second", f"tcp:{moved}:interface=127.0.0.1")
        r = _reload(var)
        assert r.returncode == 0 and "reloaded: changed: second" in r.stdout, (r, log.read_text())
        doc = _ready(ready)
        assert doc["ports"] == {"second": moved} and not set(doc["workers"]) & set(gen2)
        assert doc["web_port"] == web and _web_ok(web)
        assert _refused(second_port)
        with MLLPClient("127.0.0.1", moved, timeout=TIMEOUT) as c:
            assert c.send(A08.format(ctl="S3", mrn="M2").encode()).code == "AA"
        gen2 = doc["workers"]

        eng = _db(db_url)
        try:
            with eng.connect() as conn:
                got = {
                    k: [
                        row.detail
                        for row in conn.execute(
                            select(events.c.detail).where(events.c.kind == k).order_by(events.c.id)
                        )
                    ]
                    for k in ("config_reloaded", "config_rejected")
                }
        finally:
            eng.dispose()
        assert got["config_reloaded"] == ["added: second", "removed: first", "changed: second"]  # once each
        assert len(got["config_rejected"]) == 2 and "third.yaml:" in got["config_rejected"][0]
        assert "cannot listen" in got["config_rejected"][1]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert not any(_alive(p) for p in gen2)
    finally:
        if sender is not None:
            sender.halt.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()


def test_a_replacement_that_never_gets_ready_is_stopped_and_the_old_child_kept(tmp_path):
    """The rolling restart waits a bounded time for each new child; one that never writes its
    ready file is stopped, the old child keeps serving, and the failure is reported."""
    from types import SimpleNamespace

    from interface.ops import cluster

    sleeper = [PYTHON, "-c", "import time; time.sleep(60)"]
    settings = SimpleNamespace(web_port=None, ready_file=None)
    sup = cluster.Supervisor(settings, 1, ready_timeout=1.0, grace=10.0)
    old = cluster._Child(0, proc=subprocess.Popen(sleeper), ready=True, ready_file=tmp_path / "old.json")
    sup.children = [old]
    sup.generation = 1  # as after the new sockets were bound
    started = []

    def spawn(child):
        child.proc = subprocess.Popen(sleeper)
        child.ready_file, child.generation = tmp_path / "never.json", sup.generation
        started.append(child)

    sup._spawn = spawn
    try:
        failure = sup._roll()
        assert failure == "worker 0 did not become ready in 1s (the old one keeps running)"
        assert len(started) == 1 and started[0].proc is None  # stopped (and reaped)
        assert sup.children == [old] and old.proc.poll() is None and sup._extra == []
    finally:
        for c in [old] + started:
            if c.proc is not None:
                c.proc.kill()
                c.proc.wait(10)


def test_the_supervisor_refuses_to_start_on_alerts_its_first_child_would_refuse(tmp_path, monkeypatch):
    """An e-mail notifier whose credential variable is not set: ``run --workers N`` stops at once
    with the problem, as one process does, instead of restarting child 0 (which runs the alert
    checks and refuses it at its start) again and again."""
    from interface.hl7.errors import ConfigError
    from interface.ops import cluster
    from interface.ops.runtime import Settings

    monkeypatch.delenv("ALERT_TEST_SMTP_USER", raising=False)
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(
        "notifiers:\n  mail:\n    type: email\n    host: 127.0.0.1\n    from: a@example.org\n"
        "    to: [b@example.org]\n    username_env: ALERT_TEST_SMTP_USER\n"
        "notify: [mail]\nrules:\n  - {name: errors, type: error_items}\n"
    )
    settings = Settings(
        channels_dir=ROOT / "channels",
        mappings_dir=ROOT / "mappings",
        rules_file=ROOT / "rules" / "completeness.yaml",
        var_dir=tmp_path / "var",
        create_schema=False,
        alerts_file=alerts,
        port_overrides={name: "tcp:0:interface=127.0.0.1" for name in ("adt", "mdm", "siu")},
    )
    sup = cluster.Supervisor(settings, 2)
    try:
        with pytest.raises(ConfigError, match="ALERT_TEST_SMTP_USER is not set"):
            sup.prepare()
    finally:
        for sock in sup.sockets.values():
            sock.close()


def test_the_supervisor_checks_in_a_child_process_and_imports_none_of_the_engine(tmp_path):
    """``run --workers N``: the supervisor's start check (channels, mappings, rules, alerts, the
    schema) and its reload check run in a short-lived process (``interface.ops.config_check``):
    the supervisor itself never imports the pipeline, pydantic or SQLAlchemy (~60 MB of code a
    process never gives back), yet it has the channels and their endpoints, and a bad mapping
    still stops it with the problem."""
    db = tmp_path / "s.db"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from interface.ops import cli, cluster\n"
        "from interface.ops.settings import Settings\n"
        f"root = Path({str(ROOT)!r})\n"
        "s = Settings(channels_dir=root / 'channels', mappings_dir=root / 'mappings',\n"
        "    rules_file=root / 'rules' / 'completeness.yaml', var_dir=Path(sys.argv[1]),\n"
        "    db_url=sys.argv[2], port_overrides={n: 'tcp:0:interface=127.0.0.1' for n in ('adt', 'mdm', 'siu')})\n"
        "sup = cluster.Supervisor(s, 2)\n"
        "sup.prepare()\n"
        "channels, endpoints = sup._load()\n"
        "for sock in sup.sockets.values(): sock.close()\n"
        "print(sorted(c.name for c in sup.channels), sorted(endpoints) == sorted(c.name for c in channels))\n"
        "print(sorted(m for m in ('interface.ops.runtime', 'interface.engine.processing', 'pydantic',"
        " 'sqlalchemy', 'yaml', 'interface.config.channels') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", code, str(tmp_path / "var"), f"sqlite:///{db}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['adt', 'mdm', 'siu'] True", "[]"]
    assert db.exists()  # the schema was created (by the check process)
    # a broken mapping: the check's ConfigError reaches the supervisor with its file:line
    import shutil

    from interface.hl7.errors import ConfigError
    from interface.ops import cluster
    from interface.ops.settings import Settings

    bad = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", bad)
    target = bad / "adt.yaml"
    target.write_text(target.read_text() + "\n  : [unclosed\n")
    settings = Settings(
        channels_dir=ROOT / "channels",
        mappings_dir=bad,
        rules_file=ROOT / "rules" / "completeness.yaml",
        var_dir=tmp_path / "var",
        create_schema=False,
        port_overrides={name: "tcp:0:interface=127.0.0.1" for name in ("adt", "mdm", "siu")},
    )
    sup = cluster.Supervisor(settings, 2)
    with pytest.raises(ConfigError, match=target.name):
        sup.prepare()
    assert sup.sockets == {}


def test_an_engine_process_imports_no_pdf_library():
    """The engine's e-mail outbox (``ops.roi_outbox`` → ``desk.roi_delivery``) sends e-mails; the
    packet's PDF libraries (pypdf, fpdf with fontTools, Pillow: ~30 MB a process) are imported
    by the release and the download that build packets, not by every engine process."""
    code = (
        "import sys\n"
        "import interface.ops.service, interface.ops.roi_outbox, interface.desk.roi_delivery\n"
        "print(sorted(m for m in ('pypdf', 'fpdf', 'fontTools', 'PIL', 'pypdfium2') if m in sys.modules))\n"
        "import interface.desk.roi_release\n"
        "print('pypdf' in sys.modules)\n"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
