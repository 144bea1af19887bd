"""What an engine process imports, and what it no longer needs to (docs/benchmarks.md, #21
target 5).

Twisted's TLS stack (pyOpenSSL, cryptography, service_identity) only in an engine process that
uses TLS (``interface.engine.tls_stack``): the children of ``interface run --workers 2`` with the
shipped channels (none has TLS) never load it, and a process whose reactor came up without it
still serves a Twisted ``ssl:`` endpoint once one is asked for. The HL7 path check of the
mappings (hl7apy's definitions) runs once, in the supervisor's check process; a child skips it
for exactly the mapping data that check passed (``mapping.loader.load_mappings(checked=)``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interface.engine.client import MLLPClient

from .conftest import ROOT
from .test_cluster import _ready
from .test_cluster import _wait as _wait_until
from .test_cluster_reload import A08, TIMEOUT

PYTHON = sys.executable
TLS_LIBRARIES = ("cryptography", "OpenSSL", "service_identity")


def _loaded(pid: int) -> set[str]:
    """The files mapped into a process (its shared libraries and extension modules)."""
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_the_children_of_interface_run_with_the_shipped_channels_load_no_tls_library(tmp_path, db_url):
    """(The console is off: its release-of-information desk imports the PDF libraries, and pypdf
    imports cryptography.)"""
    ready, log = tmp_path / "ready.json", tmp_path / "engine.log"
    env = dict(os.environ)
    env.pop("INTERFACE_DB_URL", None)
    listen = [a for n in ("adt", "mdm", "siu") for a in ("--listen", f"{n}=tcp:0:interface=127.0.0.1")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "interface.ops.cli", "run", "--workers", "2", "--no-web",
             "--channels", str(ROOT / "channels"), "--mappings", str(ROOT / "mappings"), "--db", db_url,
             "--var", str(tmp_path / "var"), "--ready-file", str(ready), *listen],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            try:
                doc = _wait_until(
                    lambda: (d := _ready(ready)) and len(d["workers"]) == 2 and d, TIMEOUT, "ready"
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; log:\n{log.read_text(errors='replace')[-3000:]}") from None
            with MLLPClient("127.0.0.1", doc["ports"]["adt"], timeout=TIMEOUT) as c:  # they serve
                assert c.send(A08.format(ctl="T1", mrn="T1").encode()).code == "AA"
            for pid in [doc["pid"], *doc["workers"]]:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if pid != doc["pid"]:  # the supervisor's check passed the mappings on to the child
                    spec = json.loads(cmdline[-2])
                    assert len(spec["checked_mappings"]) == len(list((ROOT / "mappings").glob("*.yaml")))
                files = _loaded(pid)
                assert any("python" in f for f in files)  # the maps were read
                tls = sorted(f for f in files if any(f"/{lib}/" in f for lib in TLS_LIBRARIES))
                assert tls == [], f"process {pid} loaded {tls}"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


SSL_ENDPOINT = """
import ssl, sys, threading
from interface.engine import tls_stack
tls_stack.install_reactor()
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from interface.ops.endpoints import server_endpoint
print(sorted(m for m in ("OpenSSL", "cryptography", "twisted.internet.ssl") if m in sys.modules))

class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data.upper())

got = []

def client(port):
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    import socket
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"hello")
        got.append(s.recv(100))
    reactor.callFromThread(reactor.stop)

def listening(port):
    threading.Thread(target=client, args=(port.getHost().port,), daemon=True).start()

key, cert = sys.argv[1].split(",")
ep = server_endpoint(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
ep.listen(Factory.forProtocol(Echo)).addCallback(listening).addErrback(lambda f: (print(f), reactor.stop()))
reactor.run()
print(got, "OpenSSL" in sys.modules)
"""


def test_a_reactor_that_came_up_without_tls_still_serves_an_ssl_endpoint(tmp_path):
    from .test_tls import make_ca, make_leaf, write_pair

    ca_key, ca = make_ca("Test CA")
    ca_file = write_pair(tmp_path, "ca", ca_key, ca)[1]
    key, cert = write_pair(tmp_path, "server", *make_leaf(ca_key, ca, "engine", server=True))
    out = subprocess.run(
        [PYTHON, "-c", SSL_ENDPOINT, f"{key},{cert}", ca_file],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "[b'HELLO'] True"], out.stdout + out.stderr


BAD_PATH = "name: m\nroot: chart\nfields:\n  - {to: mrn, mrn: PID-3, required: true}\n  - {to: event, from: PID-40}\n"


def test_a_mapping_skips_the_hl7_path_check_for_exactly_the_data_another_check_passed(tmp_path):
    from interface.config.yamlfile import load_yaml
    from interface.hl7.errors import ConfigError
    from interface.mapping.loader import load_mappings, paths_digest

    d = tmp_path / "mappings"
    d.mkdir()
    f = d / "m.yaml"
    f.write_text(BAD_PATH)
    with pytest.raises(ConfigError, match="PID-40: PID has 39 fields in HL7 2.5.1"):
        load_mappings(d)
    digest = paths_digest(load_yaml(f).data)
    assert "m" in load_mappings(d, checked=frozenset({digest}))  # as a child told it passed
    f.write_text(BAD_PATH.replace("PID-40", "PID-41"))  # other data: checked again
    with pytest.raises(ConfigError, match="PID-41"):
        load_mappings(d, checked=frozenset({digest}))
    f.write_text(BAD_PATH.replace("PID-40", "PID-8"))
    assert load_mappings(d)["m"].paths_digest == paths_digest(load_yaml(f).data)


def test_the_supervisors_check_hands_the_digests_of_the_mappings_it_passed(tmp_path):
    from interface.config.yamlfile import load_yaml
    from interface.mapping.loader import paths_digest
    from interface.ops.config_check import run_check
    from interface.ops.settings import Settings

    s = Settings(
        channels_dir=ROOT / "channels",
        mappings_dir=ROOT / "mappings",
        rules_file=ROOT / "rules" / "completeness.yaml",
        var_dir=tmp_path / "var",
        db_url=f"sqlite:///{tmp_path / 's.db'}",
    )
    run_check("start", s)
    assert s.checked_mappings == sorted(
        paths_digest(load_yaml(f).data) for f in (ROOT / "mappings").glob("*.yaml")
    )


def test_the_console_imports_the_pdf_libraries_at_the_first_release_not_at_start():
    """The release-of-information pages and API (child 0's console) reach ``desk.roi_release``
    through ``_release()``: pypdf, fpdf, fontTools, Pillow and, through pypdf, cryptography."""
    code = (
        "import sys\n"
        "import interface.web.app, interface.web.api.roi, interface.web.pages_roi\n"
        "heavy = ('pypdf', 'fpdf', 'fontTools', 'PIL', 'cryptography', 'interface.desk.roi_release')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "interface.web.api.roi._release()\n"
        "print('pypdf' in sys.modules, interface.web.pages_roi._release() is interface.web.api.roi._release())\n"
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True True"]
