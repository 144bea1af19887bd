"""`interface check`: every problem as `file:line: message`, unknown keys included; exit 1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interface.ops import cli
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
    assert lines == [
        f"{f}:2: listen: unsupported endpoint type 'http' (use tcp:PORT:interface=ADDR or ssl:...)",
        f"{f}:3: duplicate key 'name'",
    ]


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("name: c\nlisten: tcp:1\naccept: [ADT^A01\n", 3, "unclosed '[' opened on line 3"),
        ("- a\n- b\n", 1, "valid dictionary"),
        ("", 1, "name: required key missing"),
        ("name: 'bad name!'\nlisten: tcp:1\n", 1, "name: String should match pattern"),
        ("name: x\nlisten: tcp:notaport\n", 2, "needs a port number"),
        ("name: x\nlisten: ssl:2575\n", 1, "tls: block"),
        (
            "name: x\nlisten: tcp:1\ndestinations:\n  - name: o\n    type: mllp\n",
            4,
            "needs 'host' and 'port'",
        ),
        ("name: x\nlisten: tcp:1\nvalidation: strict\n", 3, "validation"),
        ("name: x\nlisten: tcp:1\n<<: {a: 1}\n", 3, "merge keys"),
        ("name: x\nlisten: tcp:1\nretry:\n  factor: 0.5\n", 4, "retry.factor"),
        ("name: x\nlisten: tcp:1\nmrn:\n  authorty: HOSP\n", 4, "unknown key 'authorty'"),
    ],
)
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
    assert lines == [
        f"{b}:1: channel name 'same' already used in {a}",
        f"{c}:2: port 3001 already used by {a}",
    ]
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


# -- mappings judged against the HL7 definitions (interface.mapping.hl7paths, interface.hl7.definitions) -------

MAPPING_HEAD = "name: m\nroot: chart\n{version}fields:\n  - {{to: mrn, mrn: PID-3, required: true}}\n"


def mapping(tmp_path: Path, body: str, version: str = "", name: str = "m.yaml") -> Path:
    d = tmp_path / "mappings"
    d.mkdir(exist_ok=True)
    return write(d, name, MAPPING_HEAD.format(version=version) + body)


@pytest.mark.parametrize(
    "body,line,message",
    [
        # an unknown segment, with the closest defined one suggested (line 5: the path's line)
        ("  - {to: event, from: PDI-1}\n", 5, "unknown segment 'PDI' in HL7 2.5.1 (did you mean 'PID'?)"),
        # a field past the segment's last field
        ("  - {to: event, from: PID-40}\n", 5, "PID-40: PID has 39 fields in HL7 2.5.1"),
        # a component past the field's data type (CX has 10 components)
        (
            "  - {to: event, from: PID-3.11}\n",
            5,
            "PID-3.11: PID-3 is CX, which has 10 components in HL7 2.5.1",
        ),
        # a component of a primitive type
        (
            "  - {to: event, from: PID-8.2}\n",
            5,
            "PID-8.2: PID-8 is IS, a primitive type without components in HL7 2.5.1",
        ),
        # a subcomponent past the component's type (CX-4 is HD: 3 components)
        (
            "  - {to: event, from: PID-3.4.4}\n",
            5,
            "PID-3.4.4: PID-3.4 is HD, which has 3 subcomponents in HL7 2.5.1",
        ),
        # a subcomponent of a primitive component (CX-1 is ST)
        (
            "  - {to: event, from: PID-3.1.2}\n",
            5,
            "PID-3.1.2: PID-3.1 is ST, a primitive type without subcomponents in HL7 2.5.1",
        ),
        # a repetition filter reads a component too
        (
            '  - {to: event, from: "PID-3[CX-12=MR].1"}\n',
            5,
            "PID-3.12.1: PID-3 is CX, which has 10 components in HL7 2.5.1",
        ),
        # relative paths inside each: are judged against the iterated field's type (XPN: 14)
        (
            '  - to: patient.other_names\n    each: PID-5[*]\n    fields:\n      - {to: family, from: ".1.1"}\n'
            '      - {to: given, from: ".15"}\n',
            9,
            "PID-5[*].15: PID-5 is XPN, which has 14 components in HL7 2.5.1",
        ),
        # ... and so are conditions (when: field:) and concat:
        (
            "  - to: event\n    from: EVN-1\n    when: {field: EVN-8, present: true}\n",
            7,
            "EVN-8: EVN has 7 fields in HL7 2.5.1",
        ),
        ("  - to: event\n    concat: [EVN-1, EVN-9]\n", 6, "EVN-9: EVN has 7 fields in HL7 2.5.1"),
        # records: each: and group: name segments
        (
            "  - {to: event, from: EVN-1}\nrecords: {each: PDI}\n",
            6,
            "unknown segment 'PDI' in HL7 2.5.1 (did you mean 'PID'?)",
        ),
    ],
)
def test_mapping_paths_against_the_standard(tmp_path, capsys, body, line, message):
    f = mapping(tmp_path, body)
    code, lines = check(capsys, f)
    assert code == 1
    assert lines == [f"{f}:{line}: {message}"]


def test_version_decides_what_exists(tmp_path, capsys):
    body = "  - {to: event, from: PID-40.1}\n"  # PID-40 (telecom) exists from v2.7
    assert check(capsys, mapping(tmp_path, body, "version: 2.7\n"))[0] == 0
    f = mapping(tmp_path, body, 'version: "2.3"\n')
    assert check(capsys, f)[1] == [f"{f}:6: PID-40: PID has 30 fields in HL7 2.3"]
    # several versions: a path any of them defines is fine; else the first one's word
    assert check(capsys, mapping(tmp_path, body, "version: [2.5.1, 2.7]\n"))[0] == 0
    f = mapping(tmp_path, "  - {to: event, from: PID-41}\n", "version: [2.5.1, 2.7]\n")
    assert check(capsys, f)[1] == [f"{f}:6: PID-41: PID has 39 fields in HL7 2.5.1 (nor in HL7 2.7)"]


def test_unknown_version_suggested(tmp_path, capsys):
    f = mapping(tmp_path, "  - {to: event, from: EVN-1}\n", "version: 2.5.2\n")
    code, lines = check(capsys, f)
    assert code == 1
    assert lines[0].startswith(
        f"{f}:3: version: unknown HL7 version '2.5.2' (did you mean '2.5.1'?) (known: 2.1,"
    )


def test_z_segments_and_nonstandard_fields_are_not_judged(tmp_path, capsys):
    body = (
        "  - {to: event, from: ZPI-99.30.7}\n"
        "  - to: event_at\n    from: [EVN-2, EVN-2.9]\n    nonstandard: true\n"
    )
    assert check(capsys, mapping(tmp_path, body)) == (0, ["ok"])


def test_near_miss_keys_suggested(tmp_path, capsys):
    f = mapping(
        tmp_path, "  - {to: event, form: EVN-1}\n  - to: x\n    from: EVN-1\n    when: {feild: EVN-1}\n"
    )
    code, lines = check(capsys, f)
    assert code == 1
    assert f"{f}:5: unknown key 'form' (did you mean 'from'?)" in lines
    assert f"{f}:8: unknown key 'feild' (did you mean 'field'?)" in lines
    c = write(
        tmp_path,
        "c.yaml",
        "name: c\nlisten: tcp:3005\nlimits:\n  idle_timeot_seconds: 5\n"
        "destinations:\n  - {name: o, tpye: file, directory: out}\n",
    )
    code, lines = check(capsys, c)
    assert lines == [
        f"{c}:4: unknown key 'idle_timeot_seconds' (did you mean 'idle_timeout_seconds'?)",
        f"{c}:6: unknown key 'tpye' (did you mean 'type'?)",
    ]


def test_near_miss_mapping_and_destination_names(tmp_path, capsys):
    f = write(
        tmp_path,
        "x.yaml",
        "name: x\nlisten: tcp:3000\nmapping: adtt\n"
        "destinations:\n  - {name: outbound, type: file, directory: out}\n",
    )
    a = write(
        tmp_path,
        "alerts.yaml",
        "rules:\n  - name: down\n    type: downstream_down\n"
        "    channels: [xx]\n    destinations: [outbond]\n",
    )
    code, lines = check(capsys, f, ROOT / "mappings", a)
    assert code == 1
    assert lines == [
        f"{f}:3: unknown mapping 'adtt' (did you mean 'adt'?)",
        f"{a}:4: unknown channel 'xx' (did you mean 'x'?)",
        f"{a}:5: unknown destination 'outbond' (did you mean 'outbound'?)",
    ]


@pytest.mark.parametrize(
    "text,line,cause",
    [
        (
            "name: m\nroot: chart\nfields:\n\t- to: event\n",
            4,
            "a tab character; YAML indents with spaces only",
        ),
        ("name: m\ndescription: Note: this\n", 2, "an unquoted ': ' inside a value; put the value in quotes"),
        (
            "name: m\nfields:\n  - to: x\n    from: y\n     fr: z\n",
            5,
            "indentation: this line is indented deeper than the key above it",
        ),
        (
            "name: m\nfields:\n  - to: x\n    from: y\n   - to: z\n",
            5,
            "indentation: this line does not line up with the block that starts on line 3",
        ),
        (
            "name: m\nfields:\n  - to: x\n    from y\n  - to: z\n",
            4,
            "a line without 'key: value' (a ':' missing after the key?)",
        ),
        ("name: 'm\nroot: chart\n", 1, "an unclosed quote opened on line 1"),
    ],
)
def test_yaml_syntax_errors_name_the_likely_cause(tmp_path, capsys, text, line, cause):
    f = mapping(tmp_path, "")
    f.write_text(text)
    code, lines = check(capsys, f)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"{f}:{line}: YAML syntax error: ")
    assert lines[0].endswith(f"(likely cause: {cause})"), lines[0]


def test_every_file_reported_in_one_run(tmp_path, capsys):
    bad_yaml = mapping(tmp_path, "", name="a.yaml")
    bad_yaml.write_text("name: a\n\troot: chart\n")
    bad_path = mapping(tmp_path, "  - {to: event, from: PID-99}\n", name="b.yaml")
    ch = write(tmp_path, "c.yaml", "name: c\nlisten: tcp:3007\nmapping: m\ncolor: red\n")
    code, lines = check(capsys, ch, tmp_path / "mappings")
    assert code == 1
    assert [l.split(":")[0:2] for l in lines] == [[str(bad_yaml), "2"], [str(bad_path), "5"], [str(ch), "4"]]
    # b.yaml is named 'm' and has a problem of its own: the channel naming it is not "unknown mapping"
    assert not any("unknown mapping" in l for l in lines)
