"""Configuration reload (SIGHUP / ``interface reload``) without dropping connections.

Unit tests for the pure parts (the channel diff, config loading, the cluster limits, the MLLP
drain), then a real ``interface run`` subprocess on 127.0.0.1 port 0 with a copied configuration:
an open connection to an unchanged channel survives the reload, a changed channel moves to its
new definition, and an invalid edit is rejected while the engine keeps serving.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from interface.config.channels import Channel
from interface.engine.client import MLLPClient, messages_in_file
from interface.engine.outcome import Outcome
from interface.engine.transport import MLLPFactory
from interface.hl7.errors import ConfigError
from interface.hl7.framing import frame
from interface.ops.reload import cluster_problems, diff_channels, load_config
from interface.ops.runtime import Settings
from interface.store.schema import events

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "interface"
TIMEOUT = 30.0


def ch(name: str, **kw) -> Channel:
    return Channel(name=name, listen=kw.pop("listen", "tcp:0:interface=127.0.0.1"), mapping="adt", **kw)


# -- the diff ---------------------------------------------------------------------------------


def test_diff_added_removed_changed_unchanged():
    old = [ch("a"), ch("b"), ch("c", accept=["ADT^*"])]
    new = [ch("a"), ch("c", accept=["ADT^A01"]), ch("d")]
    d = diff_channels(old, new)
    assert (d.added, d.removed, d.changed, d.unchanged) == (["d"], ["b"], ["c"], ["a"])
    assert d.summary() == "added: d; removed: b; changed: c"


def test_diff_nested_and_default_changes():
    base = ch("a")
    assert diff_channels([base], [ch("a")]).unchanged == ["a"]
    # a nested limit, the endpoint, a default made explicit with another value: all changes
    for other in (
        ch("a", limits={"max_connections": 5}),
        ch("a", listen="tcp:2999:interface=127.0.0.1"),
        ch("a", timezone="Europe/London"),
        ch("a", enabled=True, description="x"),
    ):
        assert diff_channels([base], [other]).changed == ["a"]
    assert diff_channels([], []).summary() == "channels unchanged"


def test_cluster_mode_refuses_new_removed_or_moved_listeners():
    old = {"a": ch("a"), "b": ch("b")}
    new = {"a": ch("a", listen="tcp:3001"), "c": ch("c")}
    d = diff_channels(old.values(), new.values())
    single = Settings()
    assert cluster_problems(single, d, old, new) == []
    cluster = Settings(inherited_fds={"a": (5, 2), "b": (6, 2)})
    problems = cluster_problems(cluster, d, old, new)
    assert len(problems) == 3 and any("channel c is new" in p for p in problems)
    same_port = {"a": ch("a", accept=["ADT^A01"]), "b": ch("b")}
    d2 = diff_channels(old.values(), same_port.values())
    assert cluster_problems(cluster, d2, old, same_port) == []  # re-adopts the same socket


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    for sub in ("channels", "mappings", "rules"):
        shutil.copytree(ROOT / sub, cfg / sub)
    for name in ("adt", "mdm", "siu"):
        f = cfg / "channels" / f"{name}.yaml"
        text = f.read_text()
        f.write_text(
            "\n".join(
                "listen: tcp:0:interface=127.0.0.1" if line.startswith("listen:") else line
                for line in text.splitlines()
            )
            + "\n"
        )
    return cfg


def _settings(cfg: Path) -> Settings:
    return Settings(
        channels_dir=cfg / "channels",
        mappings_dir=cfg / "mappings",
        rules_file=cfg / "rules" / "completeness.yaml",
        var_dir=cfg / "var",
    )


def test_load_config_reports_file_and_line(tmp_path):
    cfg = _config(tmp_path)
    channels, pipeline = load_config(_settings(cfg))
    assert sorted(c.name for c in channels) == ["adt", "mdm", "siu"] and set(pipeline.mappings) >= {
        "adt",
        "mdm",
    }
    mdm = cfg / "channels" / "mdm.yaml"
    mdm.write_text(
        mdm.read_text()
        .replace("mapping: mdm", "mapping: nosuch")
        .replace("timezone: Europe/London", "timezone: Mars/Olympus")
    )
    with pytest.raises(ConfigError) as exc:
        load_config(_settings(cfg))
    problems = exc.value.problems
    assert any(p.startswith(f"{mdm}:") and "Mars/Olympus" in p for p in problems), problems
    # a channel that fails validation is not checked further; fix the zone: the mapping is reported
    mdm.write_text(mdm.read_text().replace("Mars/Olympus", "UTC"))
    with pytest.raises(ConfigError) as exc:
        load_config(_settings(cfg))
    line = next(i for i, t in enumerate(mdm.read_text().splitlines(), 1) if t.startswith("mapping:"))
    assert f"{mdm}:{line}: unknown mapping 'nosuch'" in exc.value.problems[0]


def test_load_config_rejects_a_broken_mapping_or_rules_file(tmp_path):
    cfg = _config(tmp_path)
    broken = cfg / "mappings" / "mdm.yaml"
    broken.write_text(broken.read_text() + "\nnot_a_key: [\n")
    with pytest.raises(ConfigError) as exc:
        load_config(_settings(cfg))
    assert any(p.startswith(f"{broken}:") for p in exc.value.problems), exc.value.problems
    shutil.copy(ROOT / "mappings" / "mdm.yaml", broken)
    rules = cfg / "rules" / "completeness.yaml"
    rules.write_text("rules: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(_settings(cfg))
    assert any(p.startswith(f"{rules}:") for p in exc.value.problems), exc.value.problems


# -- the drain --------------------------------------------------------------------------------


def test_drain_answers_the_message_in_flight_then_closes():
    pending: list[defer.Deferred] = []

    def handler(frame_bytes, peer):
        d = defer.Deferred()
        pending.append(d)
        return d

    from twisted.internet.task import Clock

    factory = MLLPFactory(ch("a"), handler, clock=Clock())
    busy, idle = factory.buildProtocol(None), factory.buildProtocol(None)
    t_busy, t_idle = StringTransport(), StringTransport()
    busy.makeConnection(t_busy)
    idle.makeConnection(t_idle)
    busy.dataReceived(frame(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1\r"))
    assert len(pending) == 1
    factory.drain()
    assert t_idle.disconnecting and not t_busy.disconnecting  # idle: closed; busy: waits for its ACK
    busy.dataReceived(frame(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|2|P|2.5.1\r"))  # already read: answered
    pending[0].callback(Outcome("accepted", b"MSA|AA|1\r", "AA", "1"))
    assert t_busy.value() == frame(b"MSA|AA|1\r") and not t_busy.disconnecting
    assert len(pending) == 2
    pending[1].callback(Outcome("accepted", b"MSA|AA|2\r", "AA", "2"))
    assert t_busy.value().endswith(frame(b"MSA|AA|2\r")) and t_busy.disconnecting
    late = factory.buildProtocol(None)  # accepted just before the port closed
    t_late = StringTransport()
    late.makeConnection(t_late)
    assert t_late.disconnecting


# -- a real engine ----------------------------------------------------------------------------


def _wait(predicate, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            break
        time.sleep(0.05)  # polling a real subprocess, with a deadline
    raise AssertionError(f"{what}: not seen; engine log:\n{log.read_text(errors='replace')[-3000:]}")


class Engine:
    def __init__(self, cfg: Path, db_url: str, workers: int = 1):
        self.cfg, self.var, self.ready = cfg, cfg / "var", cfg / "ready.json"
        self.log = cfg / "engine.log"
        self.cmd = [
            str(BIN),
            "run",
            "--var",
            str(self.var),
            "--db",
            db_url,
            "--no-web",
            "--channels",
            "channels",
            "--mappings",
            "mappings",
            "--workers",
            str(workers),
            "--listen",
            "adt=tcp:0:interface=127.0.0.1",
            "--ready-file",
            str(self.ready),
        ]

    def __enter__(self):
        env = dict(os.environ)
        env.pop("INTERFACE_DB_URL", None)
        self.out = open(self.log, "wb")
        # cwd: rules/completeness.yaml is found relative to it
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cfg, stdout=self.out, stderr=subprocess.STDOUT, env=env
        )
        try:
            self.ports = _wait(
                lambda: self.ready.exists() and json.loads(self.ready.read_text())["ports"],
                "ready file",
                self.proc,
                self.log,
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.out.close()

    def wait_status(self, count: int) -> dict:
        path = self.var / "reload-status.json"

        def seen():
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return doc if doc["count"] >= count else None

        return _wait(seen, f"reload {count}", self.proc, self.log)


def _msg(kind: str, name: str) -> bytes:
    return messages_in_file(ROOT / "sample_messages" / kind / name)[0]


def _events(db, kind: str, at_least: int = 1) -> list[str]:
    from sqlalchemy import create_engine

    from interface.store.db import make_engine

    eng = (
        make_engine(db)
        if not db.startswith("postgresql")
        else create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # the event is written by a thread just after the status
            with eng.connect() as conn:
                rows = [r.detail for r in conn.execute(select(events).where(events.c.kind == kind))]
            if len(rows) >= at_least:
                return rows
            time.sleep(0.05)
        return []
    finally:
        eng.dispose()


def test_reload_keeps_unchanged_connections_and_applies_changes(tmp_path, db_url):
    cfg = _config(tmp_path)
    with Engine(cfg, db_url) as eng:
        assert (eng.var / "interface.pid").read_text().strip() == str(eng.proc.pid)
        adt = MLLPClient("127.0.0.1", eng.ports["adt"], timeout=TIMEOUT).connect()
        old_mdm = MLLPClient("127.0.0.1", eng.ports["mdm"], timeout=TIMEOUT).connect()
        try:
            adt_sock = adt.sock
            assert adt.send(_msg("adt", "01-a28-add-person-chen.hl7")).code in ("AA", "CA")
            assert old_mdm.send(_msg("mdm", "mdm_t01_original.hl7")).code in ("AA", "CA")
            mdm = cfg / "channels" / "mdm.yaml"  # only mdm changes: it now accepts T01 only
            text = mdm.read_text()
            start = text.index("accept:")
            mdm.write_text(text[:start] + 'accept: ["MDM^T01"]' + text[text.index("\n", start) :])
            os.kill(eng.proc.pid, signal.SIGHUP)
            status = eng.wait_status(1)
            assert status["ok"] and status["summary"] == "changed: mdm", status
            ports = json.loads(eng.ready.read_text())["ports"]
            assert ports["adt"] == eng.ports["adt"]
            # the unchanged channel's connection was not touched: same socket, answered
            assert adt.send(_msg("adt", "02-a31-update-person-chen.hl7")).code in ("AA", "CA")
            assert adt.sock is adt_sock
            # the changed channel's idle connection was closed; the new listener has the new rules
            assert old_mdm.send(_msg("mdm", "mdm_t02_original_pdf.hl7")).code == "--"
            with MLLPClient("127.0.0.1", ports["mdm"], timeout=TIMEOUT) as new_mdm:
                r = new_mdm.send(_msg("mdm", "mdm_t02_original_pdf.hl7"))
                assert r.code in ("AR", "CR"), r
                assert new_mdm.send(_msg("mdm", "mdm_t01_original.hl7")).code in ("AA", "CA")
        finally:
            adt.close()
            old_mdm.close()
        assert _events(db_url, "config_reloaded") == ["changed: mdm"]
    assert not (eng.var / "interface.pid").exists()  # removed on the way out


def test_invalid_edit_is_rejected_and_the_engine_keeps_serving(tmp_path, db_url):
    cfg = _config(tmp_path)
    with Engine(cfg, db_url) as eng:
        adt = MLLPClient("127.0.0.1", eng.ports["adt"], timeout=TIMEOUT).connect()
        try:
            assert adt.send(_msg("adt", "01-a28-add-person-chen.hl7")).code in ("AA", "CA")
            mdm = cfg / "channels" / "mdm.yaml"
            mdm.write_text(mdm.read_text().replace("mapping: mdm", "mapping: [oops"))
            r = subprocess.run(
                [str(BIN), "reload", "--var", str(eng.var), "--timeout", str(TIMEOUT)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT + 10,
            )
            assert r.returncode == 1, r
            assert "rejected" in r.stderr and f"{mdm.name}:" in r.stderr, r.stderr
            sock = adt.sock
            assert adt.send(_msg("adt", "02-a31-update-person-chen.hl7")).code in ("AA", "CA")
            assert adt.sock is sock
            with MLLPClient("127.0.0.1", eng.ports["mdm"], timeout=TIMEOUT) as old:  # still the old mdm
                assert old.send(_msg("mdm", "mdm_t02_original_pdf.hl7")).code in ("AA", "CA")
            detail = _events(db_url, "config_rejected")
            assert len(detail) == 1 and "mdm.yaml:" in detail[0]
            # fixed: the next reload goes through (nothing changed compared with what runs)
            mdm.write_text(mdm.read_text().replace("mapping: [oops", "mapping: mdm"))
            r = subprocess.run(
                [str(BIN), "reload", "--var", str(eng.var), "--timeout", str(TIMEOUT)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT + 10,
            )
            assert r.returncode == 0 and "reloaded: channels unchanged" in r.stdout, r
            assert json.loads(eng.ready.read_text())["ports"] == eng.ports
            # valid, but its new port is taken: mdm goes back to its old endpoint and definition
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen(1)
                busy_port = taken.getsockname()[1]
                text = mdm.read_text()
                mdm.write_text(text.replace("listen: tcp:0:", f"listen: tcp:{busy_port}:"))
                r = subprocess.run(
                    [str(BIN), "reload", "--var", str(eng.var), "--timeout", str(TIMEOUT)],
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT + 10,
                )
            assert r.returncode == 1 and "reloaded with failures: changed: mdm; failed: mdm" in r.stderr, r
            ports = json.loads(eng.ready.read_text())["ports"]
            assert ports["adt"] == eng.ports["adt"] and ports["mdm"] != busy_port
            with MLLPClient("127.0.0.1", ports["mdm"], timeout=TIMEOUT) as back:
                assert back.send(_msg("mdm", "mdm_t03_status_change.hl7")).code in ("AA", "CA")
            assert adt.send(_msg("adt", "03-a05-preadmit-chen.hl7")).code in ("AA", "CA")
            assert adt.sock is sock
        finally:
            adt.close()


def test_reload_takes_alerts_yaml_added_changed_broken_and_removed(tmp_path, db_url):
    """alerts.yaml is part of the configuration a reload re-reads: a file that appears starts the
    alert checks, an edit is taken in place, a broken one rejects the reload (file:line), and a
    removed one leaves the checks with no rules."""
    cfg = _config(tmp_path)
    alerts = cfg / "alerts.yaml"

    def reload(expect_rc: int) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [str(BIN), "reload", "--var", str(eng.var), "--timeout", str(TIMEOUT)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT + 10,
        )
        assert r.returncode == expect_rc, r
        return r

    def logged(text: str) -> None:
        _wait(lambda: text in eng.log.read_text(errors="replace"), text, eng.proc, eng.log)

    with Engine(cfg, db_url) as eng:
        assert "alerts:" not in eng.log.read_text()  # no file, no checks
        alerts.write_text("rules:\n  - {name: errors, type: error_items}\n")
        reload(0)
        logged("alerts: 1 rule(s), checked every 30.0s")
        alerts.write_text(
            "interval_seconds: 5\nrules:\n  - {name: errors, type: error_items}\n"
            "  - {name: stuck, type: queue_age, minutes: 30}\n"
        )
        reload(0)
        logged("alerts reloaded: 2 rule(s), checked every 5.0s")
        alerts.write_text("rules:\n  - {name: errors, type: error_items}\n  - {name: bad, type: nosuch}\n")
        r = reload(1)
        assert "rejected" in r.stderr and "alerts.yaml:3:" in r.stderr, r.stderr
        alerts.unlink()
        reload(0)
        logged("alerts reloaded: 0 rule(s)")


def test_reload_without_engine_says_so(tmp_path):
    r = subprocess.run(
        [str(BIN), "reload", "--var", str(tmp_path)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert r.returncode == 1 and "interface.pid" in r.stderr


def test_supervisor_forwards_sighup_to_every_worker(tmp_path, db_url):
    """``run --workers 2``: `interface reload` signals the supervisor (its pid file); both engine
    processes reload, so every new connection, whichever process takes it, has the new definition."""
    cfg = _config(tmp_path)
    with Engine(cfg, db_url, workers=2) as eng:
        assert (eng.var / "interface.pid").read_text().strip() == str(eng.proc.pid)
        mdm = cfg / "channels" / "mdm.yaml"
        text = mdm.read_text()
        start = text.index("accept:")
        mdm.write_text(text[:start] + 'accept: ["MDM^T01"]' + text[text.index("\n", start) :])
        r = subprocess.run(
            [str(BIN), "reload", "--var", str(eng.var), "--timeout", str(TIMEOUT)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT + 10,
        )
        assert r.returncode == 0 and "changed: mdm" in r.stdout, r
        assert _events(db_url, "config_reloaded") == ["changed: mdm"]
        t02 = _msg("mdm", "mdm_t02_original_pdf.hl7")
        fields = t02.split(b"\r", 1)[0].split(b"|")
        for n in range(6):  # new connections land on either process; fresh control ids (no dedup)
            msh = b"|".join(fields[:9] + [b"RELOAD%d" % n] + fields[10:])
            with MLLPClient("127.0.0.1", eng.ports["mdm"], timeout=TIMEOUT) as c:
                r = c.send(msh + b"\r" + t02.split(b"\r", 1)[1])
                assert r.code in ("AR", "CR") and r.control_id == "RELOAD%d" % n, r
        # both processes reloaded (every connection above had the new definition): one event
        assert _events(db_url, "config_reloaded") == ["changed: mdm"]
