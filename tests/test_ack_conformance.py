"""ACK and ERR conformance (docs/hl7-conformance.md "Acknowledgements and errors"): our ACKs
parsed by strict third-party parsers per version, the sender's delimiters only, the table-0357
codes and their locations, and ``interface test`` on a file without MSH."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import get_message_info, parse_message, parse_segments

from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound
from interface.engine.writer import GroupCommitWriter
from interface.hl7.ack import MSA3_LENGTH, AckError, build_ack
from interface.hl7.errors import Location
from interface.hl7.message import Encoding, header_from_text, unescape
from interface.ops import cli
from tests.test_adt_events import ROOT, Harness, adt, pv1

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"]
LONG = (
    "channel adt does not accept this message because the visit number PV1-19 is empty and the "
    "event A02 must name its visit | ^ ~ & \\ all of them"
)


def header(version="2.5.1", msh2="^~\\&", fs="|", ctl="CTL-1", trigger="A01", charset=""):
    msh9 = f"ADT^{trigger}^ADT_A01".replace("^", msh2[0])
    f = [
        "MSH",
        msh2,
        "SENDAPP",
        "SENDFAC",
        "RECVAPP",
        "RECVFAC",
        "20260101120000",
        "",
        msh9,
        ctl,
        "P",
        version,
        "",
        "",
        "",
        "",
        "",
        charset,
    ]
    return header_from_text(fs.join(f).rstrip(fs) + "\rPID|1")


def lines(ack: bytes, codec: str = "utf-8") -> list[str]:
    return [x for x in ack.decode(codec).split("\r") if x]


def seg(ack: bytes, name: str, fs: str = "|") -> list[str]:
    [line] = [x for x in lines(ack) if x.startswith(name)]
    return line.split(fs)


def errs(ack: bytes) -> list[str]:
    return [x for x in lines(ack) if x.startswith("ERR")]


def some_errors():
    return [
        AckError("101", "PID-3 is required", Location("PID", 1, 3)),
        AckError("102", "bad date | in ^ PID-7", Location("PID", 1, 7, component=1)),
        AckError("207", "database down"),
    ]


def strict(ack: bytes):
    """hl7apy STRICT, validated. hl7apy names the structure from MSH-9 (``ACK^A01`` -> ACK_A01),
    which v2.3's two-component MSH-9 cannot name and its tables do not hold: for v2.3 the ACK
    structure is given and the segments are parsed and validated strictly all the same."""
    text = ack.decode()
    enc, _, version = get_message_info(text)
    if version == "2.3":
        m = Message("ACK", version="2.3", validation_level=VALIDATION_LEVEL.STRICT, encoding_chars=enc)
        m.children = parse_segments(text, "2.3", enc, VALIDATION_LEVEL.STRICT, m.reference, True)
        m.validate()
        return m
    return parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, force_validation=True)


# -- strict parsers, per version ------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "code,errors",
    [
        ("AA", []),
        ("AR", some_errors()[:1]),
        ("AE", some_errors()),
        ("AA", [AckError("0", "charset", None, "W")]),
    ],
)
def test_our_acks_parse_with_hl7apy_strict_and_python_hl7(version, code, errors):
    """HL7 v2.5.1 2.9.2 / 2.14.5 (ERR), and 2.3/2.4 ch. 2 (ERR-1 only): every ACK we write, AA or
    with one or several errors, is a valid ACK for hl7apy STRICT in its version, and python-hl7
    reads MSA-1/MSA-2."""
    ack = build_ack(header(version), code, NOW, text=LONG if errors else "", errors=errors)
    m = strict(ack)
    assert m.msh.msh_12.to_er7() == version
    assert m.msa.msa_1.to_er7() == code and m.msa.msa_2.to_er7() == "CTL-1"
    p = hl7.parse(ack.decode())
    assert str(p.segment("MSA")[1]) == code and str(p.segment("MSA")[2]) == "CTL-1"


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3", "2.3.1", "2.4"])
def test_below_25_one_err_with_err1_only_and_the_text_in_msa3(version):
    """Below v2.5 ERR has only ERR-1 (ELD: segment^sequence^field^code, the code a CE) and the
    ACK at most one ERR: several errors are repetitions of ERR-1; nothing past ERR-1 (no ERR-8),
    the text is MSA-3's."""
    ack = build_ack(header(version), "AE", NOW, text="PID-3 is required", errors=some_errors())
    [err] = errs(ack)
    fields = err.split("|")
    assert len(fields) == 2, err
    assert fields[1].split("~") == [
        "PID^1^3^101&Required field missing&HL70357",
        "PID^1^7^102&Data type error&HL70357",
        "^^^207&Application internal error&HL70357",
    ]
    assert seg(ack, "MSA")[3] == "PID-3 is required"


def test_v25_keeps_one_err_per_error_with_err2_err3_err4():
    ack = build_ack(header("2.5"), "AE", NOW, errors=some_errors())
    assert [e.split("|")[2:5] for e in errs(ack)] == [
        ["PID^1^3", "101^Required field missing^HL70357", "E"],
        ["PID^1^7^^1", "102^Data type error^HL70357", "E"],
        ["", "207^Application internal error^HL70357", "E"],
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_msa3_and_err8_are_at_most_80_and_never_cut_inside_an_escape(version):
    """MSA-3 is ST 80 (2.3-2.5.1) and ERR-8 TX 80 (v2.5+): longer text is cut, escaped first and
    never inside an escape sequence; ERR-7 (TX 2048) keeps the whole text."""
    text = "x" * 78 + "|abc"  # the cut falls inside \F\
    ack = build_ack(header(version), "AE", NOW, text=text, errors=[AckError("207", text)])
    msa3 = seg(ack, "MSA")[3]
    assert msa3 == "x" * 78 and len(msa3) <= MSA3_LENGTH
    assert len(build_ack(header(version), "AE", NOW, text=LONG).split(b"\r")[1].split(b"|")[3]) <= 80
    if version >= "2.5":
        err = errs(ack)[0].split("|")
        assert err[8] == "x" * 78 and err[7] == "x" * 78 + "\\F\\abc"
    strict(ack)


# -- the sender's delimiters only ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1"])
def test_no_subcomponent_character_no_ampersand(version):
    """MSH-2 ``^~\\`` declares no subcomponent character: ERR-1.4 is the bare code and nothing
    in the ACK uses ``&``; a ``&`` in the text is data and stays (it is no delimiter here)."""
    h = header(version, msh2="^~\\")
    ack = build_ack(
        h, "AR", NOW, text="refused", errors=[AckError("202", "processing id D", Location("MSH", 1, 11))]
    )
    assert seg(ack, "MSH")[1] == "^~\\"
    [err] = errs(ack)
    assert "&" not in err
    if version < "2.5":
        assert err == "ERR|MSH^1^11^202"
    else:
        assert err.split("|")[3] == "202^Unsupported processing id^HL70357"
    assert hl7.parse(ack.decode())


def test_text_is_escaped_with_the_declared_escape_character():
    """``#`` field separator, ``!@%*`` encoding characters: the text's delimiters are written as
    ``%F%``, ``%S%``…, the ``\\`` of the text is data (not this sender's escape)."""
    h = header(msh2="!@%*", fs="#")
    ack = build_ack(
        h, "AE", NOW, text="a#b!c@d*e%f\\g", errors=[AckError("102", "x#y", Location("PID", 1, 7))]
    )
    msa = seg(ack, "MSA", "#")
    assert msa[3] == "a%F%b%S%c%R%d%T%e%E%f\\g"
    assert unescape(msa[3], h.encoding) == "a#b!c@d*e%f\\g"
    err = errs(ack)[0].split("#")
    assert err[2] == "PID!1!7" and err[3] == "102!Data type error!HL70357" and err[8] == "x%F%y"
    assert "|" not in ack.decode() and "^" not in ack.decode() and "&" not in ack.decode()


def test_no_escape_character_declared_replaces_delimiters_in_text():
    """MSH-2 ``^~`` (no escape, no subcomponent character): text cannot be escaped, so its
    delimiters become spaces, never raw; MSA-2 echoes MSH-10 as the sender wrote it."""
    h = header(msh2="^~", ctl="A~1")
    ack = build_ack(h, "AE", NOW, text="bad | value ^ here ~ & \\", errors=[AckError("102", "a^b~c")])
    msa = seg(ack, "MSA")
    assert msa[2] == "A~1"
    assert msa[3] == "bad   value   here   & \\"
    assert errs(ack)[0].split("|")[8] == "a b c"


def test_control_characters_never_go_out_raw():
    """Line breaks and MLLP's 0x0B/0x1C in a text or an echoed value: spaces in text, ``\\Xhh\\``
    in the MSA-2 echo, so the ACK frame cannot be cut short."""
    h = header(ctl="C\\X1C\\1")
    assert h.control_id == "C\x1c1"
    ack = build_ack(h, "AE", NOW, text="line one\r\nline\x0btwo\x1c", errors=[AckError("207", "a\rb")])
    assert not any(b in ack.replace(b"\r", b"") for b in (b"\x0b", b"\x1c", b"\n"))
    assert seg(ack, "MSA")[2] == "C\\X1C\\1"
    assert seg(ack, "MSA")[3] == "line one  line two"


def test_a_plus_field_separator_keeps_msh7_whole():
    """A sender whose field separator is ``+``: MSH-7 is written without the UTC offset rather
    than split by it."""
    h = header(fs="+")
    ack = build_ack(h, "AA", NOW)
    assert lines(ack)[0].split("+")[6] == "20261122120000"


# -- codes and locations (table 0357) --------------------------------------------------------------


def test_empty_msh9_is_101_at_msh9(engine):
    """MSH-9 is required (2.14.9.9): empty it is AR with ERR-3 101 at MSH-9 (was accepted/200),
    in the error queue with location MSH-9; MSH-9 without its message code is 101 at MSH-9.1."""
    h = Harness(engine)
    out = h.send(adt("A01", cid="E9").replace("ADT^A01^ADT_A01", ""))
    assert out.status == "rejected" and out.ack_code == "AR"
    err = errs(out.ack)[0].split("|")
    assert (err[2], err[3].split("^")[0]) == ("MSH^1^9", "101")
    (item,) = h.items("error")
    assert (item.reason, item.error_location) == ("missing_field", "MSH-9")
    out = h.send(adt("A01", cid="E10").replace("ADT^A01^ADT_A01", "^A01"))
    assert errs(out.ack)[0].split("|")[2:4] == ["MSH^1^9^^1", "101^Required field missing^HL70357"]


def test_required_segment_missing_is_100_at_the_segment(engine):
    """``validation: structure``: an A01 without PID (required) is AE, ERR-3 100 at PID."""
    from interface.mapping.validation import structure_validator

    h = Harness(engine)
    ch = h.channels["adt"].model_copy(update={"validation": "structure"})
    eng = Engine(engine, clock=h.clock, validator=structure_validator)
    raw = "\r".join(x for x in adt("A01", cid="S1", pv1_=pv1()).split("\r") if not x.startswith("PID"))
    out = eng.receive(ch, raw.encode())
    assert out.ack_code == "AE"
    err = errs(out.ack)[0].split("|")
    assert err[2] == "PID^1" and err[3].startswith("100^")


def _on_process(h: Harness, name: str = "adt"):
    ch = h.channels[name]
    ch = ch.model_copy(update={"ack": ch.ack.model_copy(update={"when": "on_process"})})
    return ch, Engine(h.db, clock=h.clock, processor=h.worker)


@pytest.mark.parametrize("event", ["A02", "A03", "A06", "A07", "A11", "A12", "A13", "A17", "A38"])
def test_event_about_a_visit_without_pv1_19_is_101_at_pv1_19(engine, event):
    """An event about an existing visit must name it: without PV1-19 it is an error at PV1-19
    (101), never a visit created or changed without a number — AE with ERR at PV1^1^19 when the
    channel ACKs after processing, an error item at PV1-19 either way."""
    h = Harness(engine)
    h.send(adt("A01", pv1_=pv1(visit="V1")))
    h.drain()
    before = h.chart("M100")["visits"]
    ch, eng = _on_process(h)
    out = eng.receive(ch, adt(event, pv1_=pv1(visit="")).encode())
    assert out.ack_code == "AE", out.ack
    err = errs(out.ack)[0].split("|")
    assert (err[2], err[3].split("^")[0]) == ("PV1^1^19", "101")
    (item,) = h.items("error")
    assert (item.reason, item.error_location) == ("missing_field", "PV1-19")
    assert h.chart("M100")["visits"] == before
    # on_commit: AA at receipt, the same error item
    h.send(adt(event, mrn="M200", pv1_=pv1(visit="")))
    h.drain()
    assert [i.error_location for i in h.items("error")] == ["PV1-19", "PV1-19"]
    assert h.chart("M200") is None or h.chart("M200")["visits"] == []


def test_event_about_a_visit_without_pv1_is_100_at_pv1(engine):
    h = Harness(engine)
    ch, eng = _on_process(h)
    out = eng.receive(ch, adt("A02").encode())
    err = errs(out.ack)[0].split("|")
    assert (err[2], err[3].split("^")[0]) == ("PV1^1", "100")


@pytest.mark.parametrize("event", ["A01", "A04", "A05", "A08"])
def test_admit_register_preadmit_update_without_pv1_19_still_apply(engine, event):
    """Unchanged: A01/A04/A05 may start a visit the sender has not numbered yet, A08 updates."""
    h = Harness(engine)
    ch, eng = _on_process(h)
    out = eng.receive(ch, adt(event, pv1_=pv1(visit="")).encode())
    assert out.ack_code == "AA" and h.items("error") == []


def test_unknown_patient_is_204_at_pid3(engine):
    """A document for a patient the chart never saw, past the channel's hold: ERR-3 204 (unknown
    key identifier) at PID-3 — in the AE of an on_process channel and in the error queue."""
    from tests.test_unknown_patient import mdm

    h = Harness(engine)
    ch = h.channels["mdm"]
    ch = ch.model_copy(
        update={"hold_unknown_patient_seconds": 0, "ack": ch.ack.model_copy(update={"when": "on_process"})}
    )
    h.pipeline.channels[ch.name] = ch
    eng = Engine(h.db, clock=h.clock, processor=h.worker)
    out = eng.receive(ch, mdm("T02", "D1", "N404").encode())
    assert out.ack_code == "AE", out.ack
    err = errs(out.ack)[0].split("|")
    assert (err[2], err[3].split("^")[0]) == ("PID^1^3", "204")
    (item,) = h.items("error")
    assert (item.reason, item.error_location) == ("unknown_patient", "PID-3")


def test_non_ascii_version_is_203_with_the_header_swapped_and_the_value_shown_safely(engine):
    """MSH-12 ``2.5²``: AR 203 at MSH-12, the ACK still swaps MSH-3..6 (the builder used to raise
    on the superscript digit and fall back to a bare header), answers in 2.5.1, and shows the
    value as ``2.5<U+00B2>`` (not ``2.5?``)."""
    h = Harness(engine)
    out = h.send(adt("A01", cid="V1").replace("|P|2.5.1", "|P|2.5\u00b2"))
    assert out.ack_code == "AR"
    msh = seg(out.ack, "MSH")
    assert msh[2:6] == ["INTERFACE", "HOSP", "REGADT", "HOSP"] and msh[11] == "2.5.1"
    assert seg(out.ack, "MSA")[3].endswith("version 2.5<U+00B2>")
    assert errs(out.ack)[0].split("|")[2:4] == ["MSH^1^12^^1", "203^Unsupported version id^HL70357"]


# -- one hostile frame never costs the others their ACK ------------------------------------------------

HOSTILE = [
    "MSH|^~\\&|\x0bAPP|F\u00e9|R|R|2026||ADT^A08|H1|P|2.5\u00b2",
    "MSH|^~\\|A|B|C|D|2026||ADT^A\x1c08|H2|P|2.4|||||||\x00",
    "MSH|^~\\&|A|B|C|D|2026||^|H3|P|2.5.1",
    "MSH|^~\\&|A|B|C|D|2026||ADT^A08|H4\\X0A\\|T|2.5.1|||ZZ|ZZ||NOT-A-CHARSET",
    "MSH+^~\\&+A+B+C+D+2026++ADT^A02+H5+P+2.3",
]


def test_hostile_headers_among_good_frames_in_one_commit_group_through_the_writer(engine):
    """Five hostile headers among 20 good frames, submitted as one commit group to the writer:
    every frame answered, the 20 good ones AA and applied, each hostile one decided on its own
    with an ACK that python-hl7 reads and whose MSA-2 echoes its MSH-10."""
    h = Harness(engine)
    ch = h.channels["adt"].model_copy(update={"accept": ["*"]})
    eng = Engine(engine, clock=h.clock)
    writer = GroupCommitWriter(eng, lambda f, *a: f(*a), faults={})
    frames = [adt("A08", mrn=f"G{i}", cid=f"G{i}").encode() for i in range(20)]
    for n, text in enumerate(HOSTILE):
        frames.insert(n * 4 + 1, (text + "\rPID|1||X1^^^HOSP^MR\r").encode())
    answers, failures = {}, []
    done = threading.Event()

    def got(i):
        def cb(outcome):
            answers[i] = outcome
            if len(answers) == len(frames):
                done.set()

        return cb

    for i, raw in enumerate(frames):  # submitted before the writer starts: one group
        writer.submit(Inbound(ch, raw)).addCallbacks(got(i), failures.append)
    writer.start()
    try:
        assert done.wait(60)
    finally:
        writer.stop()
    assert not failures
    good = [answers[i] for i, raw in enumerate(frames) if raw.startswith(b"MSH|^~\\&|REGADT")]
    assert len(good) == 20 and {o.ack_code for o in good} == {"AA"}
    for i, raw in enumerate(frames):
        out = answers[i]
        assert out.ack is not None and out.status in ("accepted", "rejected", "processed")
        text = out.ack.decode("utf-8", "replace")
        assert hl7.parse(text).segment("MSA")
        hdr = header_from_text(raw.decode("utf-8", "replace"))
        msa2 = text.split("\r")[1].split(hdr.encoding.field)[2]
        assert unescape(msa2, hdr.encoding) == hdr.control_id


# -- interface test on a file without MSH ----------------------------------------------------------


@pytest.mark.parametrize("argv", [["test", "--channel", "adt"], ["test", "adt"]])
def test_interface_test_without_msh_says_so_and_exits_non_zero(tmp_path, capsys, argv):
    """``interface test --channel adt FILE`` (or ``interface test adt FILE``) on a file with no
    MSH: the listener's answer (AR, "no MSH segment found") on stderr, exit 1, no traceback."""
    f = tmp_path / "nomsh.hl7"
    f.write_bytes(b"PID|1||X1^^^HOSP^MR\nPV1|1|I\n")
    code = cli.main(
        argv + [str(f), "--channels", str(ROOT / "channels"), "--mappings", str(ROOT / "mappings")]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"{f}: AR: MSH: no MSH segment found" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert '"ack_code": "AR"' in captured.out


def test_interface_test_on_an_empty_file_is_a_usage_error(tmp_path, capsys):
    f = tmp_path / "empty.hl7"
    f.write_bytes(b"\n")
    assert (
        cli.main(
            [
                "test",
                "--channel",
                "adt",
                str(f),
                "--channels",
                str(ROOT / "channels"),
                "--mappings",
                str(ROOT / "mappings"),
            ]
        )
        == 2
    )
    assert "no message in the file" in capsys.readouterr().err


def test_encoding_helpers_cover_every_declared_delimiter():
    from interface.hl7.ack import echo_value, text_value

    enc = Encoding("|", "^", "~", "\\", "&", "#")
    assert text_value("a|b^c~d\\e&f#g", enc) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\P\\g"
    assert unescape(echo_value("a|b^c~d\\e&f#g\x01", enc), enc) == "a|b^c~d\\e&f#g\x01"


@pytest.mark.parametrize("version", ["2.7", "2.8", "2.8.2", "2.9"])
def test_from_v27_msa3_is_not_written_and_the_text_is_in_err(version):
    """MSA-3 is withdrawn from v2.7 (ch. 2, MSA): the ACK has MSA-1 and MSA-2 only, and the
    text travels in ERR-7/ERR-8, also when the caller gave no error of its own."""
    ack = build_ack(header(version), "AE", NOW, text="PID-3 is required", errors=some_errors()[:1])
    assert seg(ack, "MSA") == ["MSA", "AE", "CTL-1"]
    assert errs(ack)[0].split("|")[8] == "PID-3 is required"
    bare = build_ack(header(version), "AR", NOW, text="no route")
    assert seg(bare, "MSA") == ["MSA", "AR", "CTL-1"]
    [err] = errs(bare)
    assert err.split("|")[3].startswith("207^") and err.split("|")[8] == "no route"
    assert len(seg(build_ack(header("2.6"), "AE", NOW, text="x"), "MSA")) == 4  # 2.6 keeps MSA-3
    if version != "2.9":  # hl7apy knows up to 2.8.2
        strict(ack)
        strict(bare)
