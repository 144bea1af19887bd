"""Building ACK messages. Pure: the header, the code, the errors and the clock come in; bytes go out.

The ACK swaps sender and receiver, echoes MSH-10 in MSA-2, answers in the message's version,
encoding characters and character set, and carries the errors (docs/hl7-conformance.md
"Acknowledgements and errors"):

* v2.5 and later: one ERR segment per error: ERR-2 location (ERL), ERR-3 the table-0357 code
  (CWE), ERR-4 severity, ERR-7 the text (TX 2048) and ERR-8 the user message (TX 80).
* v2.1-v2.4: ERR has ERR-1 only (ELD: segment^sequence^field^code, the code a CE in
  subcomponents) and the ACK has at most one ERR (ACK: MSH MSA [ERR]), so several errors are
  repetitions of ERR-1; the text goes in MSA-3 only.

Only the delimiters the sender declared in MSH-1/MSH-2 are written: without a subcomponent
character ERR-1.4 is the bare code; text (MSA-3, ERR-7/8, echoed values) is escaped with the
sender's escape character, and with none declared its delimiters are replaced by spaces. Line
breaks and other control characters never go out raw (a 0x1C would end the MLLP frame). MSA-3 is
ST 80 in every version that has it (v2.1-v2.6; withdrawn from v2.7, where the text is in ERR-7
and ERR-8 only): longer text is cut there, never inside an escape sequence.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from interface.hl7.errors import CODE_TEXT, Location
from interface.hl7.message import CHARSETS, DEFAULT_ENCODING, Encoding, Header

ACCEPT = "AA"
ERROR = "AE"
REJECT = "AR"
ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}

MSA3_LENGTH = 80  # MSA-3 text message, ST 80 (v2.1-v2.6, 2.9.2 / 2.14.8.3)
ERR8_LENGTH = 80  # ERR-8 user message, TX 80 (v2.5, v2.5.1)
ERR7_LENGTH = 2048  # ERR-7 diagnostic information, TX 2048 (v2.5 and later)
DEFAULT_VERSION = "2.5.1"
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,2}", re.ASCII)
_TRIGGER = re.compile(r"[A-Z0-9]{1,7}", re.ASCII)


@dataclass(frozen=True, slots=True)
class AckError:
    """One ERR segment's worth: table-0357 code, where, what, severity (E, W, I, F)."""

    code: str
    text: str = ""
    location: Location | None = None
    severity: str = "E"


def ack_code(code: str, header: Header | None, mode: str = "auto") -> str:
    """Translate an original-mode code (AA/AE/AR) to the one to send.

    ``mode='auto'`` follows the sender: enhanced (CA/CE/CR) when MSH-15 or MSH-16 is valued.
    ``'original'`` always answers AA/AE/AR; ``'enhanced'`` always CA/CE/CR.
    """
    if mode == "enhanced" or (mode == "auto" and header is not None and header.enhanced):
        return ENHANCED.get(code, code)
    return code


def should_send_accept_ack(header: Header | None, code: str, mode: str = "auto") -> bool:
    """MSH-15 in enhanced mode: AL (always), NE (never), ER (errors only), SU (success only)."""
    if header is None or mode == "original" or not header.enhanced:
        return True
    rule = header.accept_ack_type or "AL"
    ok = code in ("AA", "CA")
    return (
        rule == "AL" or (rule == "ER" and not ok) or (rule == "SU" and ok) or rule not in ("NE", "ER", "SU")
    )


_counter = itertools.count(1)
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _base36(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out


_prefix = _base36(os.getpid(), 3)


def new_control_id(now: datetime) -> str:
    """A control id unique within this process and across restarts: time + pid + counter, 20
    characters (the v2.5 MSH-10 limit). The counter is base 36 (60 million per second), so a fast
    engine never repeats an id within a second."""
    return f"{now:%y%m%d%H%M%S}{_prefix}{_base36(next(_counter), 5)}"


def hl7_timestamp(now: datetime) -> str:
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.strftime("%Y%m%d%H%M%S%z")


# -- values in the sender's delimiters ---------------------------------------------------------


_CONTROL = re.compile("[\x00-\x1f\x7f]")


@functools.lru_cache(maxsize=64)
def _delimiters(enc: Encoding) -> dict[str, str]:
    """Declared delimiter -> its escape sequence letter (HL7 v2.5.1 2.7.1); one dict per
    encoding (an ACK asks some twenty times, issue #21). Not to be changed by callers."""
    return _delimiter_table(enc)


@functools.lru_cache(maxsize=64)
def _special(enc: Encoding) -> re.Pattern[str]:
    """A character that needs escaping or replacing in ``enc``: a delimiter or a control one."""
    chars = "".join(re.escape(c) for c in _delimiters(enc))
    return re.compile(f"[{chars}\x00-\x1f\x7f]")


def _delimiter_table(enc: Encoding) -> dict[str, str]:
    pairs = (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.repetition, "R"),
        (enc.escape, "E"),
        (enc.subcomponent, "T"),
        (enc.truncation, "P"),
    )
    return {ch: code for ch, code in pairs if ch}


def _pieces(value: str, enc: Encoding, exact: bool) -> list[str]:
    """``value`` as a list of output pieces (one per character, an escape sequence whole)."""
    esc = enc.escape
    table = _delimiters(enc)
    out: list[str] = []
    for ch in value:
        code = table.get(ch)
        if code is not None:
            if esc:
                out.append(f"{esc}{code}{esc}")
            else:  # nothing can be escaped: text loses the character, an echo keeps it as sent
                out.append(ch if exact and ch != enc.field else " ")
        elif ord(ch) < 32 or ord(ch) == 127:
            if exact and esc:
                out.append(f"{esc}X{ord(ch):02X}{esc}")
            elif not exact:
                out.append(" ")
        else:
            out.append(ch)
    return out


def text_value(value: str, enc: Encoding, limit: int | None = None) -> str:
    """Free text for an ST/TX field of the ACK: delimiters escaped with the sender's escape
    character (a space when it declared none), line breaks and control characters as spaces,
    at most ``limit`` characters once escaped (cut between escape sequences, never inside)."""
    if not _special(enc).search(value):  # nothing to escape: one piece per character
        return (value if limit is None else value[:limit]).strip()
    pieces = _pieces(value, enc, exact=False)
    if limit is None:
        return "".join(pieces).strip()
    out, n = [], 0
    for p in pieces:
        if n + len(p) > limit:
            break
        out.append(p)
        n += len(p)
    return "".join(out).strip()


def echo_value(value: str, enc: Encoding) -> str:
    """A value echoed exactly (MSA-2 <- MSH-10): delimiters escaped, control characters as
    ``\\Xhh\\``. With no escape character declared the value is as the sender wrote it (it
    could not escape anything either), less control characters, which cannot be written."""
    if not _special(enc).search(value):
        return value
    return "".join(_pieces(value, enc, exact=True))


def raw_value(value: str, enc: Encoding) -> str:
    """A raw field of the inbound MSH copied into the ACK (MSH-3..6, 11, 12, 18): already in the
    sender's delimiters; only control characters are escaped (or dropped)."""
    if not _CONTROL.search(value):
        return value
    esc = enc.escape
    return "".join(c if 32 <= ord(c) != 127 else (f"{esc}X{ord(c):02X}{esc}" if esc else "") for c in value)


@functools.lru_cache(maxsize=256)
def _version_tuple(version: str) -> tuple[int, ...]:
    """``2.5.1`` -> (2, 5, 1); only ASCII digits count (``2.5²`` is (2, 5))."""
    out = []
    for part in version.split(".")[:3]:
        m = re.match(r"[0-9]+", part, re.ASCII)
        out.append(int(m.group()) if m else 0)
    return tuple(out) if out and out[0] else (2, 5)


# -- ERR --------------------------------------------------------------------------------------


def _err1(err: AckError, enc: Encoding) -> str:
    """ERR-1 (ELD, v2.1-v2.4): segment^sequence^field^code, the code a CE in subcomponents
    (identifier&text&HL70357) when the sender declared a subcomponent character."""
    cs, ss = enc.component, enc.subcomponent
    loc = err.location or Location()
    code = text_value(err.code, enc)
    if ss:
        code = ss.join([code, text_value(CODE_TEXT.get(err.code, ""), enc), "HL70357"])
    seg = text_value(loc.segment, enc)
    parts = [
        seg,
        str(loc.sequence) if seg else "",
        str(loc.field) if seg and loc.field is not None else "",
        code,
    ]
    return cs.join(parts)


def _err_segment(err: AckError, enc: Encoding) -> str:
    """One ERR segment, v2.5 and later."""
    fs, cs = enc.field, enc.component
    loc = err.location or Location()
    erl = ""
    seg = text_value(loc.segment, enc)
    if seg:
        bits = [seg, str(loc.sequence)]
        for v in (
            loc.field,
            loc.repetition if loc.field is not None else None,
            loc.component,
            loc.subcomponent,
        ):
            bits.append("" if v is None else str(v))
        erl = cs.join(bits).rstrip(cs)
    cwe = cs.join([text_value(err.code, enc), text_value(CODE_TEXT.get(err.code, ""), enc), "HL70357"])
    fields = [
        "ERR",
        "",
        erl,
        cwe,
        text_value(err.severity, enc) or "E",
        "",
        "",
        text_value(err.text, enc, ERR7_LENGTH),
        text_value(err.text, enc, ERR8_LENGTH),
    ]
    return fs.join(fields).rstrip(fs)


def err_segments(errors: Iterable[AckError], enc: Encoding, version: str) -> list[str]:
    """The ACK's ERR segments for ``errors`` in ``version``'s form (module docstring)."""
    errs = list(errors)
    if not errs:
        return []
    if _version_tuple(version) < (2, 5):
        if not enc.repetition:  # one ERR-1 only: the first error
            errs = errs[:1]
        return [enc.field.join(["ERR", enc.repetition.join(_err1(e, enc) for e in errs)])]
    return [_err_segment(e, enc) for e in errs]


# -- the ACK ----------------------------------------------------------------------------------


def _stamp(now: datetime, enc: Encoding) -> str:
    """MSH-7; without the UTC offset if its sign is one of the sender's delimiters."""
    stamp = hl7_timestamp(now)
    if _special(enc).search(stamp):  # a delimiter (the stamp has no control characters)
        utc = now.astimezone(timezone.utc) if now.tzinfo else now
        stamp = f"{utc:%Y%m%d%H%M%S}"
    return stamp


@functools.lru_cache(maxsize=64)
def _sender_fields(sender: tuple[str, str], enc: Encoding) -> tuple[str, ...]:
    """MSH-3/MSH-4 of the ACK for the channel's ``sender`` (HD components written with ``^``),
    in ``enc``: the same for every ACK of a channel, so built once."""
    cs = enc.component
    return tuple(cs.join(text_value(part, enc) for part in v.split("^")).rstrip(cs) for v in sender)


def ack_version(header: Header | None) -> str:
    """The version the ACK answers in: the message's MSH-12 when it reads as one (``2.4``,
    ``2.5.1``), else 2.5.1."""
    v = header.version if header is not None else ""
    return v if v and _VERSION.fullmatch(v) else DEFAULT_VERSION


def build_ack(
    header: Header | None,
    code: str,
    now: datetime,
    *,
    text: str = "",
    errors: tuple[AckError, ...] | list[AckError] = (),
    mode: str = "auto",
    control_id: str | None = None,
    sender: tuple[str, str] | None = None,
) -> bytes:
    """The ACK message (unframed bytes) for ``header``; ``header=None`` for unreadable input.

    ``code`` is the original-mode code (AA, AE, AR); ``mode`` decides whether CA/CE/CR is sent.
    ``sender``: MSH-3/MSH-4 of the ACK (the channel's identity, HD components written with
    ``^``); default: the message's MSH-5/MSH-6.
    """
    enc = header.encoding if header else DEFAULT_ENCODING
    fs, cs = enc.field, enc.component
    send_code = ack_code(code, header, mode)
    version = ack_version(header)
    ctl = control_id or new_control_id(now)
    stamp = _stamp(now, enc)
    if header is not None:
        trigger = header.trigger if _TRIGGER.fullmatch(header.trigger or "") else ""
        if not trigger:
            msh9 = "ACK"
        elif _version_tuple(version) >= (2, 3, 1):  # MSG-3 message structure from v2.3.1
            msh9 = cs.join(["ACK", trigger, "ACK"])
        else:
            msh9 = cs.join(["ACK", trigger])
        f = header.msh
        msh12 = raw_value(f[12], enc) if version == header.version else version
        fields = [
            "MSH",
            enc.msh2,
            raw_value(f[5], enc),
            raw_value(f[6], enc),
            raw_value(f[3], enc),
            raw_value(f[4], enc),
            stamp,
            "",
            msh9,
            ctl,
            raw_value(f[11], enc) or "P",
            msh12,
        ]
        if header.charset:
            fields += ["", "", "", "", "", raw_value(f[18], enc)]
        msa = ["MSA", send_code, echo_value(header.control_id, enc)]
    else:
        fields = ["MSH", enc.msh2, "", "", "", "", stamp, "", "ACK", ctl, "P", version]
        msa = ["MSA", send_code, ""]
    if sender is not None:
        fields[2], fields[3] = _sender_fields(tuple(sender), enc)
    if text and _version_tuple(version) < (2, 7):
        msa.append(text_value(text, enc, MSA3_LENGTH))
    elif text and not errors:  # MSA-3 is withdrawn from v2.7: the text goes in an ERR instead
        errors = [AckError("0" if code == ACCEPT else "207", text, None, "I" if code == ACCEPT else "E")]
    segments = [fs.join(fields), fs.join(msa)]
    segments += err_segments(errors, enc, version)
    body = "\r".join(segments) + "\r"
    codec = CHARSETS.get(header.charset.upper(), "utf-8") if header and header.charset else "utf-8"
    try:
        (enc.field + enc.msh2).encode(codec)
    except UnicodeEncodeError:  # delimiters the declared charset cannot write (the message was
        codec = "utf-8"  # not really in it either): UTF-8 rather than "?" for a separator
    return body.encode(codec, "replace")
