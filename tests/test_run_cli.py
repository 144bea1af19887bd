"""`interface run` start-up failures are one clear line and exit 1, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_port_in_use_is_one_clear_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "interface.ops.cli",
                "run",
                "--var",
                str(tmp_path),
                "--no-web",
                "--listen",
                f"adt=tcp:{port}:interface=127.0.0.1",
                "--listen",
                "mdm=tcp:0:interface=127.0.0.1",
                "--listen",
                "siu=tcp:0:interface=127.0.0.1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        taken.close()
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
