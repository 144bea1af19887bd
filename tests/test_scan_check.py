"""`interface check` validates the scan channels (channels/scan/*.yaml) as it does the MLLP
channels: every problem as `file:line: message`, before the engine starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from interface.config.scan import load_scan_channels
from interface.hl7.errors import ConfigError
from interface.ops import cli

GOOD = "name: records\ninbox: var/scan/inbox\n"
BAD = "name: ward\ninbox: var/scan/ward\npoll_seconds: 0\nmin_confidence: 150\ncolour: red\n"


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def check(capsys, *paths) -> tuple[int, list[str]]:
    code = cli.main(["check", *map(str, paths)])
    return code, capsys.readouterr().out.splitlines()


@pytest.fixture
def channels(tmp_path) -> Path:
    d = tmp_path / "channels"
    write(d / "scan", "a.yaml", GOOD)
    return d


def test_a_good_scan_folder_is_ok_and_never_read_as_mllp_channels(channels, capsys):
    assert check(capsys, channels) == (0, ["ok"])
    assert check(capsys, channels / "scan") == (0, ["ok"])
    assert check(capsys, channels / "scan" / "a.yaml") == (0, ["ok"])


def test_every_problem_of_a_scan_channel_with_file_and_line(channels, capsys):
    bad = write(channels / "scan", "b.yaml", BAD)
    code, lines = check(capsys, channels)
    assert code == 1
    assert [ln.split(": ", 1)[0] for ln in lines] == [f"{bad}:3", f"{bad}:4", f"{bad}:5"]
    assert "poll_seconds" in lines[0] and "min_confidence" in lines[1] and "unknown key 'colour'" in lines[2]
    assert check(capsys, bad)[1] == lines  # the file alone says the same


def test_names_and_inboxes_used_twice_and_the_reserved_name(channels, capsys):
    twin = write(
        channels / "scan", "b.yaml", "# the same scanner again\nname: records\ninbox: var/scan/./inbox\n"
    )
    upload = write(channels / "scan", "c.yaml", "name: upload\ninbox: var/scan/other\n")
    code, lines = check(capsys, channels)
    assert code == 1
    assert lines == [
        f"{twin}:2: scan channel name 'records' is used by {channels / 'scan' / 'a.yaml'} too",
        f"{twin}:3: inbox 'var/scan/./inbox' is records's too",
        f"{upload}:1: scan channel name 'upload' is reserved for uploads",
    ]
    with pytest.raises(ConfigError) as exc:  # the engine refuses them at start the same way
        load_scan_channels(channels / "scan")
    assert exc.value.problems == lines


def test_yaml_syntax_error_in_a_scan_channel(channels, capsys):
    broken = write(channels / "scan", "z.yaml", "name: x\ninbox: [var/scan\n")
    code, lines = check(capsys, channels)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{broken}:2: ")


def test_the_repository_scan_channels_are_checked(capsys, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    assert check(capsys, "channels/scan") == (0, ["ok"])
    assert cli.check_config(["channels"]) == []
