"""ACK building: swap, echo, version, encoding, ERR by version, enhanced mode."""

from __future__ import annotations

from datetime import datetime, timezone

import hl7
import pytest

from interface.hl7.ack import AckError, ack_code, build_ack, should_send_accept_ack
from interface.hl7.errors import Location
from interface.hl7.message import header_from_text

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def header(
    *,
    enc="^~\\&",
    fs="|",
    msh9="ADT^A01^ADT_A01",
    ctl="CTL-1",
    version="2.5.1",
    msh15="",
    msh16="",
    charset="",
    msh11="P",
):
    f = [
        "MSH",
        enc,
        "SENDAPP",
        "SENDFAC",
        "RECVAPP",
        "RECVFAC",
        "20260101120000",
        "",
        msh9,
        ctl,
        msh11,
        version,
        "",
        "",
        msh15,
        msh16,
        "",
        charset,
    ]
    return header_from_text(fs.join(f).rstrip(fs) + "\rPID|1")


def segs(ack: bytes, fs: str = "|") -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    assert ack.endswith(b"\r")
    for s in ack.decode("latin-1").split("\r"):
        if s:
            parts = s.split(fs)
            if parts[0] == "MSH":
                parts = ["MSH", fs] + parts[1:]
            out.setdefault(parts[0], []).append(parts)
    return out


def field(seg: list[str], n: int) -> str:
    return seg[n] if n < len(seg) else ""


def test_swaps_sender_and_receiver_and_echoes_control_id():
    ack = build_ack(header(), "AA", NOW, control_id="ACK1")
    msh = segs(ack)["MSH"][0]
    assert [msh[3], msh[4], msh[5], msh[6]] == ["RECVAPP", "RECVFAC", "SENDAPP", "SENDFAC"]
    assert msh[9] == "ACK^A01^ACK" and msh[10] == "ACK1" and msh[11] == "P" and msh[12] == "2.5.1"
    assert msh[7] == "20261122120000+0000"
    msa = segs(ack)["MSA"][0]
    assert msa[1:3] == ["AA", "CTL-1"]
    assert "ERR" not in segs(ack)


def test_parsed_by_python_hl7():
    ack = build_ack(
        header(), "AE", NOW, text="bad", errors=[AckError("101", "PID-3 missing", Location("PID", 1, 3))]
    )
    m = hl7.parse(ack.decode())
    assert str(m.segment("MSA")[1]) == "AE"
    assert str(m.segment("MSA")[2]) == "CTL-1"


@pytest.mark.parametrize("version,msh9", [("2.3", "ACK^A01"), ("2.4", "ACK^A01^ACK"), ("2.7", "ACK^A01^ACK")])
def test_answers_in_message_version(version, msh9):
    msh = segs(build_ack(header(version=version), "AA", NOW))["MSH"][0]
    assert msh[12] == version and msh[9] == msh9


def test_echoes_processing_id():
    assert segs(build_ack(header(msh11="T"), "AA", NOW))["MSH"][0][11] == "T"


def test_echoes_encoding_characters():
    h = header(enc="!@%*", fs="#", msh9="ADT!A01")
    ack = build_ack(h, "AR", NOW, errors=[AckError("100", "x", Location("PID", 1, 5))])
    s = segs(ack, "#")
    assert s["MSH"][0][2] == "!@%*"
    assert s["MSA"][0][1:3] == ["AR", "CTL-1"]
    assert s["ERR"][0][2] == "PID!1!5"
    assert s["ERR"][0][3] == "100!Segment sequence error!HL70357"


def test_echoes_truncation_character_v27():
    ack = build_ack(header(enc="^~\\&#", version="2.7"), "AA", NOW)
    assert segs(ack)["MSH"][0][2] == "^~\\&#"


def test_control_id_with_delimiters_is_escaped_back():
    h = header(ctl="A\\F\\B")
    assert h.control_id == "A|B"
    assert segs(build_ack(h, "AA", NOW))["MSA"][0][2] == "A\\F\\B"


def test_err_v25_and_later_uses_err2_err3_err4():
    errs = [
        AckError("101", "PID-3 is required", Location("PID", 1, 3, 1, 1)),
        AckError("200", "unsupported", Location("MSH", 1, 9)),
    ]
    ack = build_ack(header(version="2.5.1"), "AR", NOW, text="rejected", errors=errs)
    err = segs(ack)["ERR"]
    assert len(err) == 2
    assert field(err[0], 1) == ""
    assert err[0][2] == "PID^1^3^1^1"
    assert err[0][3] == "101^Required field missing^HL70357"
    assert err[0][4] == "E"
    assert field(err[0], 8) == "PID-3 is required"
    assert err[1][2] == "MSH^1^9" and err[1][3].startswith("200^")
    assert segs(ack)["MSA"][0][3] == "rejected"


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3", "2.3.1", "2.4"])
def test_err_before_25_uses_err1(version):
    ack = build_ack(
        header(version=version), "AE", NOW, errors=[AckError("102", "bad date", Location("PID", 1, 7))]
    )
    err = segs(ack)["ERR"][0]
    assert err[1] == "PID^1^7^102&Data type error&HL70357"
    assert field(err, 3) == ""  # no ERR-3 for old parsers


def test_err_without_location():
    ack = build_ack(header(), "AE", NOW, errors=[AckError("207", "db down")])
    err = segs(ack)["ERR"][0]
    assert field(err, 2) == "" and err[3].startswith("207^")
    ack = build_ack(header(version="2.3"), "AE", NOW, errors=[AckError("207", "db down")])
    assert segs(ack)["ERR"][0][1].endswith("207&Application internal error&HL70357")


def test_err_text_is_escaped():
    ack = build_ack(header(), "AE", NOW, errors=[AckError("102", "a|b^c")])
    assert segs(ack)["ERR"][0][8] == "a\\F\\b\\S\\c"


def test_warning_severity():
    ack = build_ack(header(), "AA", NOW, errors=[AckError("0", "charset", None, "W")])
    assert segs(ack)["ERR"][0][4] == "W"


def test_ack_for_unreadable_input():
    """No header: a generic AR with empty MSA-2 and the ERR."""
    ack = build_ack(None, "AR", NOW, errors=[AckError("100", "no MSH", Location("MSH"))])
    s = segs(ack)
    assert s["MSH"][0][9] == "ACK" and s["MSA"][0][1:3] == ["AR", ""]
    assert s["ERR"][0][3].startswith("100^")


def test_ack_with_empty_trigger():
    ack = build_ack(header(msh9="ACK", version="2.5"), "AA", NOW)
    assert segs(ack)["MSH"][0][9] == "ACK"


def test_control_ids_unique():
    """ACK control ids never repeat, even past 1000 ACKs in one second, and fit MSH-10 (20)."""
    ids = {segs(build_ack(header(), "AA", NOW))["MSH"][0][10] for _ in range(2500)}
    assert len(ids) == 2500
    assert all(len(i) == 20 for i in ids)


# -- enhanced mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("code,enhanced", [("AA", "CA"), ("AE", "CE"), ("AR", "CR")])
def test_enhanced_mode_codes(code, enhanced):
    h = header(msh15="AL", msh16="NE")
    assert ack_code(code, h) == enhanced
    assert segs(build_ack(h, code, NOW))["MSA"][0][1] == enhanced
    assert ack_code(code, header()) == code
    assert ack_code(code, header(), "enhanced") == enhanced
    assert ack_code(code, h, "original") == code


def test_msh16_alone_means_enhanced():
    h = header(msh16="AL")
    assert h.enhanced and ack_code("AA", h) == "CA"


@pytest.mark.parametrize(
    "msh15,ok,err",
    [
        ("AL", True, True),
        ("NE", False, False),
        ("ER", False, True),
        ("SU", True, False),
        ("", True, True),
    ],
)
def test_accept_ack_conditions(msh15, ok, err):
    h = header(msh15=msh15, msh16="AL")
    assert should_send_accept_ack(h, "AA") is ok
    assert should_send_accept_ack(h, "AE") is err
    assert should_send_accept_ack(h, "AR") is err


def test_original_mode_always_answers():
    assert should_send_accept_ack(header(), "AA")
    assert should_send_accept_ack(None, "AR")
    assert should_send_accept_ack(header(msh15="NE"), "AA", "original")
