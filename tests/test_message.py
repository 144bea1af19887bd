"""The lean tokenizer: encoding characters, separators, charsets, escapes, batches, the corpus."""

from __future__ import annotations

from datetime import datetime, timezone

import hl7
import pytest

from interface.hl7.ack import build_ack
from interface.hl7.errors import ParseError
from interface.hl7.message import (
    Encoding,
    decode,
    escape,
    find_segments,
    header_from_text,
    is_batch,
    parse,
    parse_bytes,
    split_message_bytes,
    split_messages,
    split_segments,
    unescape,
)
from tests.conftest import corpus_files

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def msh(
    *,
    enc="^~\\&",
    fs="|",
    msh9="ADT^A01^ADT_A01",
    ctl="MSG1",
    version="2.5.1",
    charset="",
    msh15="",
    msh16="",
) -> str:
    f = [
        "MSH",
        enc,
        "SEND",
        "SFAC",
        "RECV",
        "RFAC",
        "20260101120000",
        "",
        msh9,
        ctl,
        "P",
        version,
        "",
        "",
        msh15,
        msh16,
        "",
        charset,
    ]
    return fs.join(f).rstrip(fs)


def msh_bytes(charset: str, body: bytes) -> bytes:
    return (msh(charset=charset) + "\rPID|1||100^^^H^MR||").encode("ascii") + body


# -- encoding characters ----------------------------------------------------------------------


def test_standard_encoding_characters():
    e = Encoding.from_msh(msh())
    assert (e.field, e.component, e.repetition, e.escape, e.subcomponent, e.truncation) == (
        "|",
        "^",
        "~",
        "\\",
        "&",
        "",
    )
    assert e.msh2 == "^~\\&"


def test_v27_truncation_character():
    """MSH-2 of five characters: the fifth is the v2.7 truncation character; \\P\\ escapes it,
    and a value ending with it (unescaped) was truncated: the mark is not data (v2.7 2.5.5.2)."""
    text = msh(enc="^~\\&#", version="2.7") + "\rPID|1||100||A\\P\\B#"
    m = parse(text)
    assert m.encoding.truncation == "#"
    assert m.value("PID", 5) == "A#B"
    assert header_from_text(text).version == "2.7"
    assert m.value("MSH", 2) == "^~\\&#"


def test_three_encoding_characters():
    """MSH-2 '^~\\' (no subcomponent separator): '&' in data is plain text."""
    text = msh(enc="^~\\") + "\rPID|1||100||A&B^C"
    m = parse(text)
    assert m.encoding.subcomponent == ""
    assert m.value("PID", 5, 1, 1) == "A&B"
    assert m.value("PID", 5, 1, 2) == "C"


def test_custom_delimiters():
    text = "MSH#!@%*#SEND#SFAC#R#RF#2026##ADT!A01#C1#P#2.5\rPID#1##100!!!H!MR@200!!!X!PI##DOE!JOHN*X"
    m = parse(text)
    h = header_from_text(text)
    assert (h.message_code, h.trigger, h.control_id) == ("ADT", "A01", "C1")
    assert m.value("PID", 3, 2, 1) == "200"
    assert m.value("PID", 5, 1, 2, 2) == "X"


@pytest.mark.parametrize(
    "segment",
    [
        "MSH",
        "MSH|",
        "MSH|^",
        "MSH|^^~\\&|",
        "MSHA^~\\&|",
        "MSH|^~ &|",
        "MSH\r^~\\&",
        "PID|^~\\&|",
        "MSH|^~\\&123|",
    ],
)
def test_bad_encoding_characters_raise_parse_error(segment):
    with pytest.raises(ParseError):
        Encoding.from_msh(segment)


# -- separators -------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_cr_lf_crlf_separators(sep):
    text = sep.join([msh(), "EVN|A01", "PID|1||100^^^H^MR||DOE^JOHN", ""]) + sep
    m = parse(text)
    assert [s.name for s in m.segments] == ["MSH", "EVN", "PID"]
    assert m.value("PID", 5, 1, 2) == "JOHN"
    assert header_from_text(text).control_id == "MSG1"
    assert find_segments(text, "PID")[0].startswith("PID|1||100")


def test_blank_lines_dropped_and_continuation_lines_rejoined():
    text = msh() + "\r\n\r\nNTE|1||first line\nsecond line\rPID|1"
    assert split_segments(text) == [msh(), "NTE|1||first line\nsecond line", "PID|1"]


def test_leading_whitespace_and_bom_before_msh():
    text = "\ufeff\r\n  " + msh() + "\rPID|1"
    assert header_from_text(text).control_id == "MSG1"
    assert parse(text).segments[0].name == "MSH"


def test_find_segments_does_not_match_longer_ids():
    text = msh() + "\rPIDX|1\rPID|1|a\rPID|2|b"
    assert find_segments(text, "PID") == ["PID|1|a", "PID|2|b"]


# -- character sets (MSH-18) ------------------------------------------------------------------


def test_msh18_ascii():
    d = decode(msh_bytes("ASCII", b"SMITH"))
    assert d.charset == "ascii" and not d.warning


def test_msh18_8859_1():
    d = decode(msh_bytes("8859/1", "MÜLLER".encode("latin-1")))
    assert d.charset == "latin-1" and d.text.endswith("MÜLLER") and not d.warning


def test_msh18_unicode_utf8():
    d = decode(msh_bytes("UNICODE UTF-8", "Иванов".encode("utf-8")))
    assert d.charset == "utf-8" and d.text.endswith("Иванов") and not d.warning
    assert header_from_text(d.text).charset == "UNICODE UTF-8"


def test_msh18_repeating_uses_first():
    d = decode(msh_bytes("UNICODE UTF-8~8859/1", "é".encode("utf-8")))
    assert d.charset == "utf-8" and d.text.endswith("é")


def test_no_msh18_utf8_default():
    d = decode(msh_bytes("", "José".encode("utf-8")))
    assert d.charset == "utf-8" and d.text.endswith("José") and not d.warning


def test_no_msh18_latin1_bytes_read_as_cp1252_with_warning():
    d = decode(msh_bytes("", "Müller".encode("latin-1")))
    assert d.text.endswith("Müller") and d.warning


@pytest.mark.parametrize(
    "charset,body",
    [
        ("ASCII", b"\xe9\xff"),
        ("UNICODE UTF-8", b"\xc3\x28\xff"),
        ("NO SUCH CHARSET", b"\xff"),
        ("", b"\x81\x8d\x8f\x90\x9d"),  # undefined in cp1252 too
    ],
)
def test_bytes_that_do_not_decode_are_reported_never_raised(charset, body):
    """Undecodable bytes: decoded with replacement and a warning; never an exception."""
    d = decode(msh_bytes(charset, body))
    assert d.warning
    assert header_from_text(d.text).control_id == "MSG1"


def test_declared_ascii_but_utf8_read_as_utf8():
    d = decode(msh_bytes("ASCII", "é".encode("utf-8")))
    assert d.charset == "utf-8" and d.text.endswith("é") and "UTF-8" in d.warning


def test_ack_answers_in_declared_charset():
    """The ACK keeps MSH-18 and is encoded in it."""
    d = decode(msh_bytes("8859/1", "é".encode("latin-1")))
    h = header_from_text(d.text)
    ack = build_ack(h, "AA", NOW, text="reçu")
    assert ack.split(b"\r")[0].split(b"|")[17] == b"8859/1"
    assert "reçu".encode("latin-1") in ack


# -- escapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,value",
    [
        ("\\F\\", "|"),
        ("\\S\\", "^"),
        ("\\T\\", "&"),
        ("\\R\\", "~"),
        ("\\E\\", "\\"),
        ("A\\T\\E", "A&E"),
        ("\\X41\\", "A"),
        ("\\XC3A9\\", "é"),
        ("\\XE9\\", "é"),
        ("\\X0D0A\\", "\r\n"),
        ("a\\.br\\b", "a\nb"),
        ("\\H\\bold\\N\\", "bold"),
        ("\\Zvendor\\", "\\Zvendor\\"),
        ("\\XZZ\\", "\\XZZ\\"),
        ("no escapes", "no escapes"),
        ("\\", "\\"),
        ("\\F", "\\F"),
    ],
)
def test_unescape(raw, value):
    assert unescape(raw) == value


def test_escapes_with_custom_escape_character():
    enc = Encoding("#", "!", "@", "%", "*")
    assert unescape("a%F%b%S%c%T%d%R%e%E%f", enc) == "a#b!c*d@e%f"


def test_escape_roundtrip():
    for value in ["a|b^c&d~e\\f", "plain", "line1\nline2", "\\F\\"]:
        assert unescape(escape(value)) == value.replace("\r", "\n")


def test_message_value_unescapes():
    text = msh() + "\rPID|1||100||O\\S\\BRIEN\\F\\X^JOHN\\T\\JR"
    m = parse(text)
    assert m.value("PID", 5, 1, 1) == "O^BRIEN|X"
    assert m.value("PID", 5, 1, 2) == "JOHN&JR"
    assert m.value("PID", 5, 1, 9) == ""
    assert m.value("ZZZ", 1) == ""


# -- batches ----------------------------------------------------------------------------------


def test_fhs_bhs_batch_split():
    text = "\r".join(
        [
            "FHS|^~\\&|S",
            "BHS|^~\\&|S",
            msh(ctl="1"),
            "PID|1",
            msh(ctl="2"),
            "PID|2",
            "BTS|2",
            "BHS|^~\\&|S",
            msh(ctl="3"),
            "BTS|1",
            "FTS|2",
        ]
    )
    assert is_batch(text)
    msgs = split_messages(text)
    assert [header_from_text(m).control_id for m in msgs] == ["1", "2", "3"]
    assert msgs[0].endswith("PID|1")


def test_several_messages_without_batch_headers():
    text = msh(ctl="1") + "\nPID|1\n" + msh(ctl="2") + "\nPID|2\n"
    assert not is_batch(text)
    assert len(split_messages(text)) == 2


def test_batch_without_msh_is_a_parse_error():
    with pytest.raises(ParseError):
        split_messages("BHS|^~\\&\rEVN|A01\rPID|1\rBTS|1")


def test_segments_before_first_msh_are_a_parse_error():
    with pytest.raises(ParseError):
        split_messages("PID|1\r" + msh())


def test_no_msh_is_parse_error():
    with pytest.raises(ParseError):
        parse("PID|1||100")
    with pytest.raises(ParseError):
        header_from_text("")


# -- the header -------------------------------------------------------------------------------


def test_header_fields():
    h = header_from_text(msh(msh15="AL", msh16="ne", charset="UNICODE UTF-8"))
    assert (h.sending_application, h.sending_facility, h.receiving_application, h.receiving_facility) == (
        "SEND",
        "SFAC",
        "RECV",
        "RFAC",
    )
    assert (h.message_code, h.trigger, h.structure, h.message_type) == ("ADT", "A01", "ADT_A01", "ADT^A01")
    assert (h.control_id, h.processing_id, h.version) == ("MSG1", "P", "2.5.1")
    assert (h.accept_ack_type, h.application_ack_type, h.enhanced) == ("AL", "NE", True)
    assert h.msh[9] == "ADT^A01^ADT_A01"


def test_header_short_msh():
    h = header_from_text("MSH|^~\\&|A")
    assert h.control_id == "" and h.message_type == "" and not h.enhanced


# -- the corpus -------------------------------------------------------------------------------

CORPUS = corpus_files()


def test_corpus_present():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_message_gives_header_and_ack(path):
    """Every corpus message yields a header and an ACK (or a declared ParseError), never a crash."""
    raw = path.read_bytes()
    d = decode(raw)
    try:
        texts = split_messages(d.text)
    except ParseError:
        assert path.name == "pyhl7-bad-batch-no-msh.hl7"
        assert build_ack(None, "AR", NOW).startswith(b"MSH|")
        return
    for text in texts:
        h = header_from_text(text)
        assert h.message_code
        ack = build_ack(h, "AA", NOW)
        assert b"\rMSA" + h.encoding.field.encode() + (b"CA" if h.enhanced else b"AA") in ack
        parse(text)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_tokenizer_matches_python_hl7(path):
    """Our split-based tokenizer gives the same segments and fields as python-hl7."""
    d = decode(path.read_bytes())
    try:
        texts = split_messages(d.text)
    except ParseError:
        return
    for text in texts:
        mine = parse(text)
        ref = hl7.parse(text)
        assert len(ref) == len(mine.segments)
        for rs, s in zip(ref, mine.segments):
            assert [str(x) for x in rs] == s.fields


def test_parse_bytes():
    m = parse_bytes(msh_bytes("8859/1", "É".encode("latin-1")))
    assert m.value("PID", 3, 1, 1) == "100"


def test_split_message_bytes_keeps_exact_bytes():
    """Batch members cut at the byte level keep bytes that do not decode, and every separator."""
    m1 = msh(ctl="1").encode() + b"\r\nPID|1||\xff\xfe\r\n"
    m2 = msh(ctl="2").encode() + b"\nPID|2\n"
    raw = b"\xef\xbb\xbfFHS|^~\\&\rBHS|^~\\&\r" + m1 + m2 + b"BTS|2\rFTS|1\r"
    assert split_message_bytes(raw) == [m1, m2]
    assert len(split_message_bytes(raw)) == len(split_messages(decode(raw).text))
    assert split_message_bytes(b"junk") == []


@pytest.mark.parametrize("raw", [b"MSH\r", b"MSH\n", b"xxMSH\rPID|1", b"MSH"])
def test_decode_never_raises_on_msh_without_separator(raw):
    """Found by fuzzing: 'MSH' followed by a line break crashed MSH-18 detection."""
    assert decode(raw).text == raw.decode()


def test_declared_ascii_with_latin1_bytes_read_as_latin1():
    """MSH-18 ASCII but 8859-1 accents (common): the letters are kept, with a warning."""
    d = decode(msh_bytes("ASCII", "MÜLLER".encode("latin-1")))
    assert d.text.endswith("MÜLLER") and "ASCII" in d.warning
