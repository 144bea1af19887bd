"""Fuzzing the framer and the parser (F1/F2): only declared errors, no hang, bounded buffers.

Examples per test: env FUZZ_EXAMPLES (``make fuzz`` sets 20000); modest by default so the file
runs in seconds.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from interface.config.channels import Channel
from interface.engine.inbound import Engine
from interface.hl7.ack import build_ack
from interface.hl7.errors import FrameTooLarge, InterfaceError, ParseError
from interface.hl7.framing import FrameDecoder, frame
from interface.hl7.message import (
    decode,
    header_from_text,
    is_batch,
    parse,
    split_message_bytes,
    split_messages,
    unescape,
)
from interface.mapping.validation import structure_validator
from interface.store.db import create_schema
from tests.conftest import corpus_files

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
CORPUS = [p.read_bytes() for p in corpus_files()]
DELIMS = list(b"|^~\\&#\r\n\x0b\x1c ") + [0xFF, 0xC3, 0x00]

payload = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


# -- framer ---------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_framer_arbitrary_bytes_only_declared_errors_and_bounded(data, cuts):
    dec = FrameDecoder(max_frame=1024)
    bounds = sorted(set([0, len(data)] + [c for c in cuts if c <= len(data)]))
    for a, b in zip(bounds, bounds[1:]):
        try:
            frames = dec.feed(data[a:b])
        except FrameTooLarge:
            frames = []
        assert dec.buffered <= 1024
        assert all(len(f) <= 1024 for f in frames)


@FUZZ
@given(
    msgs=st.lists(payload, min_size=1, max_size=5),
    junk=st.lists(st.sampled_from([b"", b"\r", b"\n", b" \r\n", b"x"]), min_size=5, max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=15),
    drop_cr=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_framer_any_split_same_frames(msgs, junk, cuts, drop_cr):
    """P1: a stream of frames (with junk between, some without the final CR) split anywhere."""
    stream = b""
    for i, m in enumerate(msgs):
        f = frame(m)
        if drop_cr[i] and not junk[i].startswith(b"\r"):
            f = f[:-1]
        stream += junk[i] + f
    whole = FrameDecoder().feed(stream)
    assert whole == msgs
    dec = FrameDecoder()
    bounds = sorted(set([0, len(stream)] + [c for c in cuts if c <= len(stream)]))
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += dec.feed(stream[a:b])
    assert got == msgs


# -- parser -----------------------------------------------------------------------------------------


def _read_all(raw: bytes) -> None:
    """The receive path on arbitrary bytes: only ParseError may come out."""
    d = decode(raw)
    assert isinstance(d.text, str)
    try:
        texts = split_messages(d.text) if is_batch(d.text) else [d.text]
    except ParseError:
        build_ack(None, "AR", NOW)
        return
    if is_batch(d.text):
        split_message_bytes(raw)
    for text in texts:
        try:
            h = header_from_text(text)
        except ParseError:
            build_ack(None, "AR", NOW)
            continue
        build_ack(h, "AA", NOW, text=text[:40])
        structure_validator(text, h)
        try:
            m = parse(text)  # stricter than the header: a line break inside MSH-2 is refused here
        except ParseError:
            continue
        for s in m.segments[:5]:
            for n in range(1, min(len(s.fields), 8)):
                m.value(s.name, n, 1, 2, 1)


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_parser_arbitrary_bytes(raw):
    _read_all(raw)


@FUZZ
@given(
    prefix=st.sampled_from(
        [b"MSH", b"MSH|", b"MSH|^~\\&|", b"MSH#!@%*#", b"BHS|^~\\&\rMSH|^~\\&|", b"\xef\xbb\xbfMSH|^~\\&#|"]
    ),
    rest=st.binary(max_size=500),
)
def test_parser_msh_like_bytes(prefix, rest):
    _read_all(prefix + rest)


@st.composite
def mutated_corpus(draw):
    raw = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "dup"]))
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] = draw(st.sampled_from(DELIMS + [draw(st.integers(0, 255))]))
        elif op == "delete":
            del raw[i : i + draw(st.integers(1, 20))]
        elif op == "insert":
            raw[i:i] = bytes(draw(st.lists(st.sampled_from(DELIMS), min_size=1, max_size=5)))
        elif op == "truncate":
            del raw[i:]
        else:
            raw[i:i] = raw[:i][-50:]
    return bytes(raw)


@FUZZ
@given(raw=mutated_corpus())
def test_parser_mutated_corpus(raw):
    _read_all(raw)


@FUZZ
@given(value=st.text(max_size=200), esc=st.sampled_from(["\\", "%", "}"]))
def test_unescape_total(value, esc):
    from interface.hl7.message import Encoding

    enc = Encoding("|", "^", "~", esc, "&")
    assert isinstance(unescape(value, enc), str)


# -- the engine's receive path ------------------------------------------------------------------------

_DB = None


def _engine() -> Engine:
    global _DB
    if _DB is None:
        _DB = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        create_schema(_DB)
    return Engine(_DB, clock=lambda: NOW, validator=structure_validator)


CHANNEL = Channel.model_validate(
    {"name": "fuzz", "listen": "tcp:0", "accept": ["*"], "mapping": "adt", "validation": "structure"}
)


@FUZZ
@given(raw=st.one_of(mutated_corpus(), st.binary(max_size=600)))
def test_engine_receive_never_raises(raw):
    """Mutated and random frames through Engine.receive: an outcome, raw stored, never an exception."""
    try:
        out = _engine().receive(CHANNEL, raw)
    except InterfaceError as exc:  # pragma: no cover - would be a declared error escaping
        raise AssertionError(f"declared error escaped receive: {exc!r}") from exc
    assert out.status in ("accepted", "duplicate", "quarantined", "rejected")
    if out.ack is not None:
        assert b"MSA" in out.ack


# -- every MSH field: the header reader, the ACK builder and receive() -------------------------------

_NASTY = list("|^~\\&#+-.!%*?$ \t\r\n\x00\x01\x0b\x1c\x7f\u00e9\u00b2\u0663\u4e2d\ufffd\U0001f600")
_chars = st.characters(exclude_categories=["Cs"])  # any character a sender can encode
field_text = st.text(alphabet=st.one_of(st.sampled_from(_NASTY), _chars), max_size=24)
msh_fields = st.lists(field_text, min_size=19, max_size=19)  # MSH-3 .. MSH-21


@st.composite
def msh_messages(draw) -> str:
    """A message whose MSH-1 .. MSH-21 are drawn: usual or odd separators and encoding
    characters, and each field random text (non-ASCII, delimiters, control characters, empty),
    now and then a real value where the engine looks (MSH-9, 10, 12, 18)."""
    fs = draw(st.one_of(st.sampled_from(["|", "#", "+", "!"]), _chars))
    msh2 = draw(
        st.one_of(
            st.sampled_from(["^~\\&", "^~\\", "^~", "^~\\&#", "!@%*", "^~\\&\x0b"]),
            st.text(alphabet=st.sampled_from(_NASTY), max_size=6),
        )
    )
    f = draw(msh_fields)
    for n, real in (
        (9, st.sampled_from(["ADT^A01", "ADT^A08^ADT_A01", "", "^A01"])),
        (10, st.sampled_from(["C1", "C&1", "C^1", "C\\F\\1", "C\\X0B\\1"])),
        (12, st.sampled_from(["2.3", "2.4", "2.5.1", "2.5\u00b2", ""])),
        (18, st.sampled_from(["", "ASCII", "8859/1", "UNICODE UTF-8", "ISO IR87", "BOGUS"])),
    ):
        if draw(st.booleans()):
            f[n - 3] = draw(real)
    return "MSH" + fs + msh2 + fs + fs.join(f) + "\rPID|1||X1^^^HOSP^MR\r"


def _codec(h) -> str:
    from interface.hl7.message import CHARSETS

    codec = CHARSETS.get(h.charset.upper(), "utf-8") if h is not None and h.charset else "utf-8"
    try:
        (h.encoding.field + h.encoding.msh2).encode(codec) if h is not None else None
    except UnicodeEncodeError:
        return "utf-8"
    return codec


def _python_hl7_reads(enc) -> bool:
    """python-hl7 fills delimiters MSH-2 does not declare with ``~ ^ &`` and fails when one of
    those is already the sender's (``MSH|&!``): such an ACK is checked with our parser only."""
    seps = [enc.field, enc.repetition or "~", enc.component or "^", enc.subcomponent or "&"]
    return len(set(seps)) == 4 and (enc.escape or "\\") not in seps


def _check_ack(ack: bytes, h) -> None:
    """Parses with python-hl7; no raw line break or MLLP byte; MSA-2 echoes MSH-10."""
    import hl7

    from interface.hl7.message import unescape as unesc

    codec = _codec(h)
    text = ack.decode(codec)
    assert not any(c in text for c in "\n\x0b\x1c\x00"), repr(text)
    if h is None or _python_hl7_reads(h.encoding):
        assert hl7.parse(text).segment("MSA")
    assert parse(text).first("MSA") is not None
    if h is None:
        return
    enc = h.encoding
    msa = text.split("\r")[1].split(enc.field)
    expected = h.control_id
    if not enc.escape:
        expected = "".join(c for c in expected if 32 <= ord(c) != 127)
    try:
        expected.encode(codec)
    except UnicodeEncodeError:
        return  # written as "?": nothing to compare
    assert unesc(msa[2], enc) == expected, (msa[2], expected)


@FUZZ
@given(
    text=msh_messages(),
    code=st.sampled_from(["AA", "AE", "AR"]),
    note=field_text,
    seg=st.text(max_size=4),
    version_errs=st.integers(0, 3),
)
def test_ack_builder_on_every_msh_field(text, code, note, seg, version_errs):
    """The header reader raises ParseError or reads a header; the ACK builder never raises, its
    ACK parses with python-hl7 and echoes MSH-10 in MSA-2, for any MSH-1..MSH-21."""
    from interface.hl7.ack import AckError
    from interface.hl7.errors import Location

    raw = text.encode("utf-8")
    try:
        h = header_from_text(decode(raw).text)
    except ParseError:
        h = None
    errors = [AckError(str(100 + i), note, Location(seg, i + 1, i or None)) for i in range(version_errs)]
    for mode in ("auto", "original"):
        _check_ack(build_ack(h, code, NOW, text=note, errors=errors, mode=mode, sender=("IF^X", note[:5])), h)


@FUZZ
@given(text=msh_messages())
def test_engine_receive_decides_every_msh_field(text):
    """receive() on any MSH-1..MSH-21 always decides (an outcome with a status) and every ACK
    frame it answers parses, echoing MSH-10."""
    raw = text.encode("utf-8")
    out = _engine().receive(CHANNEL, raw)
    assert out.status in ("accepted", "duplicate", "quarantined", "rejected", "error")
    try:
        h = header_from_text(decode(raw).text)
    except ParseError:
        h = None
    for i, frame_ in enumerate(out.frames):
        _check_ack(frame_, h if (i == 0 and out.parts is None) else None)
