"""`interface check`: every problem as `file:line: message`, unknown keys included; exit 1."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interface import cli
from tests.test_loopback import BIN, ROOT

BAD_A = """\
name: a
listen: tcp:2575:interface=127.0.0.1
accept: ["ADT^*"]
mapping: adt
limits:
  max_frame_bytes: 10
  idle_timeot_seconds: 5
tls:
  cert: x.pem
colour: red
allow: ["10.0.0.0/8", "not-an-ip"]
timezone: Mars/Base
ack:
  when: sometimes
"""

EXPECTED_A = [
    (6, "limits.max_frame_bytes"),
    (7, "unknown key 'idle_timeot_seconds'"),
    (8, "tls.key: required key missing"),
    (10, "unknown key 'colour'"),
    (11, "'not-an-ip' is not an IP address"),
    (12, "unknown time zone 'Mars/Base'"),
    (14, "ack.when"),
]


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def check(capsys, *paths) -> tuple[int, list[str]]:
    code = cli.main(["check", *map(str, paths)])
    return code, capsys.readouterr().out.splitlines()


def test_every_problem_with_file_and_line(tmp_path, capsys):
    f = write(tmp_path, "a.yaml", BAD_A)
    code, lines = check(capsys, f)
    assert code == 1
    assert len(lines) == len(EXPECTED_A)
    for line, (n, text) in zip(lines, EXPECTED_A):
        assert line.startswith(f"{f}:{n}: "), line
        assert text in line, line


def test_duplicate_key_reported_with_the_other_problems(tmp_path, capsys):
    f = write(tmp_path, "b.yaml", "name: b\nlisten: http:80\nname: c\n")
    code, lines = check(capsys, f)
    assert code == 1
    assert lines == [f"{f}:2: listen: unsupported endpoint type 'http' (use tcp:PORT:interface=ADDR or ssl:...)",
                     f"{f}:3: duplicate key 'name'"]


@pytest.mark.parametrize("text,line,message", [
    ("name: c\nlisten: tcp:1\naccept: [ADT^A01\n", 3, "unclosed '[' opened on line 3"),
    ("- a\n- b\n", 1, "valid dictionary"),
    ("", 1, "name: required key missing"),
    ("name: 'bad name!'\nlisten: tcp:1\n", 1, "name: String should match pattern"),
    ("name: x\nlisten: tcp:notaport\n", 2, "needs a port number"),
    ("name: x\nlisten: ssl:2575\n", 1, "tls: block"),
    ("name: x\nlisten: tcp:1\ndestinations:\n  - name: o\n    type: mllp\n", 4, "needs 'host' and 'port'"),
    ("name: x\nlisten: tcp:1\nvalidation: strict\n", 3, "validation"),
    ("name: x\nlisten: tcp:1\n<<: {a: 1}\n", 3, "merge keys"),
    ("name: x\nlisten: tcp:1\nretry:\n  factor: 0.5\n", 4, "retry.factor"),
    ("name: x\nlisten: tcp:1\nmrn:\n  authorty: HOSP\n", 4, "unknown key 'authorty'"),
])
def test_bad_channel_files(tmp_path, capsys, text, line, message):
    f = write(tmp_path, "c.yaml", text)
    code, lines = check(capsys, f)
    assert code == 1
    assert any(l.startswith(f"{f}:{line}: ") and message in l for l in lines), lines


def test_unknown_mapping(tmp_path, capsys):
    f = write(tmp_path, "x.yaml", "name: x\nlisten: tcp:3000\nmapping: nosuch\n")
    code, lines = check(capsys, f, ROOT / "mappings")
    assert code == 1
    assert lines == [f"{f}:3: unknown mapping 'nosuch'"]


def test_name_and_port_used_twice(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", "name: same\nlisten: tcp:3001\n")
    b = write(tmp_path, "b.yaml", "name: same\nlisten: tcp:3002\n")
    c = write(tmp_path, "c.yaml", "name: other\nlisten: tcp:3001:interface=127.0.0.1\n")
    d = write(tmp_path, "d.yaml", "name: spare\nenabled: false\nlisten: tcp:3001\n")
    code, lines = check(capsys, tmp_path)
    assert code == 1
    assert lines == [f"{b}:1: channel name 'same' already used in {a}",
                     f"{c}:2: port 3001 already used by {a}"]
    assert d.exists()


def test_missing_path(tmp_path, capsys):
    code, lines = check(capsys, tmp_path / "nope")
    assert code == 1 and lines == [f"{tmp_path / 'nope'}:1: no such file or directory"]


def test_repository_config_is_clean(capsys):
    code = cli.main(["check", str(ROOT / "channels"), str(ROOT / "mappings"), str(ROOT / "rules")])
    out = capsys.readouterr().out
    assert code == 0 and out.strip() == "ok", out


def test_subprocess_exit_code(tmp_path):
    f = write(tmp_path, "a.yaml", BAD_A)
    p = subprocess.run([str(BIN), "check", str(f)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 1
    assert p.stdout.count(f"{f}:") == len(EXPECTED_A)
    assert f"{len(EXPECTED_A)} problem(s)" in p.stderr
