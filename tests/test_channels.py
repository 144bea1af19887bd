"""Typed channels and the YAML loader behind them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from interface.config.channels import Channel, load_channels
from interface.config.yamlfile import load_yaml_text
from interface.hl7.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def ch(**kw) -> Channel:
    base = dict(name="t", listen="tcp:0:interface=127.0.0.1")
    base.update(kw)
    return Channel.model_validate(base)


def test_repository_channels_load():
    chans = {c.name: c for c in load_channels(ROOT / "channels")}
    assert {"adt", "mdm"} <= set(chans)
    assert chans["adt"].destinations[0].mapping == "adt"
    assert chans["adt"].accepts("ADT", "A01")
    assert not chans["mdm"].accepts("ADT", "A01")


@pytest.mark.parametrize(
    "patterns,code,trigger,ok",
    [
        (["*"], "ORU", "R01", True),
        (["ADT^*"], "ADT", "A40", True),
        (["ADT^*"], "ADT", "", False),  # no trigger is not "any event": 201
        (["ADT^A01"], "ADT", "A08", False),
        (["adt^a0?"], "ADT", "A08", True),
        (["MDM^T0?"], "MDM", "T11", False),
        (["ADT"], "ADT", "A31", True),
        (["ADT^A01", "MDM^*"], "MDM", "T02", True),
        (["ADT^*"], "ACK", "", False),
    ],
)
def test_accepts(patterns, code, trigger, ok):
    assert ch(accept=patterns).accepts(code, trigger) is ok


def test_accepts_code_tells_200_from_201():
    c = ch(accept=["ADT^A01"])
    assert c.accepts_code("ADT") and not c.accepts_code("ORU")


@pytest.mark.parametrize(
    "allow,host,ok",
    [
        ([], "8.8.8.8", True),
        (["10.0.0.0/8"], "10.2.3.4", True),
        (["10.0.0.0/8"], "11.2.3.4", False),
        (["::1"], "::1", True),
        (["127.0.0.1"], "localhost", False),  # names are never matched: addresses only
        (["192.168.1.5"], "192.168.1.5", True),
    ],
)
def test_allowlist(allow, host, ok):
    assert ch(allow=allow).allows(host) is ok


def test_bad_allow_entry():
    with pytest.raises(ValidationError, match="not an IP address"):
        ch(allow=["10.0.0.0/8", "example.org"])


def test_mapping_shorthand_and_destinations():
    c = ch(mapping="adt")
    assert [(d.name, d.type, d.mapping) for d in c.destinations] == [("store", "store", "adt")]
    c = ch(mapping="adt", destinations=[{"name": "copy", "type": "file", "directory": "/tmp"}])
    assert [d.name for d in c.destinations] == ["store", "copy"]
    with pytest.raises(ValidationError, match="unique"):
        ch(
            destinations=[
                {"name": "a", "type": "file", "directory": "/x"},
                {"name": "a", "type": "file", "directory": "/y"},
            ]
        )
    with pytest.raises(ValidationError, match="needs 'mapping'"):
        ch(destinations=[{"name": "a", "type": "store"}])


@pytest.mark.parametrize(
    "listen",
    [
        "tcp:2575",
        "tcp:0:interface=127.0.0.1",
        "tcp6:2575:interface=\\:\\:1",
        "unix:/tmp/x.sock",
        "ssl:2575:privateKey=k.pem",
    ],
)
def test_valid_endpoints(listen):
    assert ch(listen=listen).listen == listen


@pytest.mark.parametrize("listen", ["http:80", "tcp:", "tcp:abc", "tcp:70000", "ssl:2575", "2575"])
def test_invalid_endpoints(listen):
    with pytest.raises(ValidationError):
        ch(listen=listen)


def test_limits_and_defaults():
    c = ch()
    assert c.limits.max_frame_bytes == 16 * 1024 * 1024 and c.limits.max_connections == 100
    assert c.ack.when == "on_commit" and c.ack.mode == "auto" and c.validation == "none"
    with pytest.raises(ValidationError):
        ch(limits={"max_connections": 0})
    with pytest.raises(ValidationError):
        ch(limits={"idle_timeout_seconds": 0})


def test_unknown_keys_refused_everywhere():
    for bad in (
        {"colour": 1},
        {"limits": {"max_frames": 1}},
        {"ack": {"mode": "auto", "x": 1}},
        {"mrn": {"authorty": "H"}},
    ):
        with pytest.raises(ValidationError, match="Extra inputs"):
            ch(**bad)


def test_mrn_rule():
    rule = ch(mrn={"authority": "HOSP", "types": ["mr", "PI"]}).mrn_rule
    assert rule.authority == "HOSP" and rule.types == ("MR", "PI")


def test_json_schema():
    schema = Channel.model_json_schema()
    assert "listen" in schema["properties"] and schema["additionalProperties"] is False


def test_load_channels_reports_all_files(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nlisten: tcp:3000\ncolour: red\n")
    (tmp_path / "b.yml").write_text("name: b\nlisten: tcp:3000\n")
    (tmp_path / "c.yaml").write_text("name: c\nlisten: tcp:3000\n")
    with pytest.raises(ConfigError) as exc:
        load_channels(tmp_path)
    assert exc.value.problems == [
        f"{tmp_path / 'a.yaml'}:3: unknown key 'colour'",
        f"{tmp_path / 'c.yaml'}:2: port 3000 already used by {tmp_path / 'b.yml'}, "
        f"and channels b and c could both take the same message "
        f"({tmp_path / 'b.yml'}:2 (channel b)): channels share an endpoint only "
        f"with match: blocks (MSH-3..MSH-6) that do not overlap",
    ]


def test_port_zero_may_repeat(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nlisten: tcp:0\n")
    (tmp_path / "b.yaml").write_text("name: b\nlisten: tcp:0\n")
    assert [c.name for c in load_channels(tmp_path)] == ["a", "b"]


# -- the YAML loader ------------------------------------------------------------------------------


def test_lines_kept_for_nested_paths():
    doc = load_yaml_text("a: 1\nb:\n  c:\n    - x\n    - y: 2\n", "f.yaml")
    assert doc.line(("b", "c", 1, "y")) == 5
    assert doc.line(("b", "c", 0)) == 4
    assert doc.line(("b", "nope")) == 2
    assert doc.where(("a",)) == "f.yaml:1"


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['true']\n",
        "a: !!python/name:os.system x\n",
        "b: 1\na: !custom 1\n",
        "a: !!set {x: 1}\n",
    ],
)
def test_unsafe_and_unknown_tags_refused_with_line(text):
    """Only plain YAML: object-constructing or custom tags are config errors, never crashes."""
    with pytest.raises(ConfigError, match=f"f.yaml:{text.count(chr(10))}: "):
        load_yaml_text(text, "f.yaml")


def test_duplicate_keys_fail_fast_unless_keep_going():
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_yaml_text("a: 1\na: 2\n", "f.yaml")
    doc = load_yaml_text("a: 1\na: 2\n", "f.yaml", keep_going=True)
    assert doc.problems == ["f.yaml:2: duplicate key 'a'"]
