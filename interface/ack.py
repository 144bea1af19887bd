"""Building ACK messages. Pure: the header, the code, the errors and the clock come in; bytes go out.

The ACK swaps sender and receiver, echoes MSH-10 in MSA-2, answers in the message's version,
encoding characters and character set, and carries one ERR segment per error: ERR-2 location,
ERR-3 the table-0357 code, ERR-4 severity (v2.5 and later); ERR-1 (segment^sequence^field^code)
for v2.1-v2.4 senders, whose parsers know only ERR-1.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import CODE_TEXT, Location
from .message import DEFAULT_ENCODING, CHARSETS, Encoding, Header, escape

ACCEPT = "AA"
ERROR = "AE"
REJECT = "AR"
ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


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
    return rule == "AL" or (rule == "ER" and not ok) or (rule == "SU" and ok) or rule not in ("NE", "ER", "SU")


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


def _err_segment(err: AckError, enc: Encoding, version: str) -> str:
    fs, cs, ss = enc.field, enc.component or "^", enc.subcomponent or "&"
    loc = err.location or Location()
    code_text = CODE_TEXT.get(err.code, "")
    text = escape(err.text, enc) if err.text else ""
    if _version_tuple(version) < (2, 5):
        parts = [loc.segment, str(loc.sequence) if loc.segment else "",
                 str(loc.field) if loc.field is not None else "",
                 ss.join([err.code, escape(code_text, enc), "HL70357"])]
        err1 = cs.join(parts).rstrip(cs)
        seg = ["ERR", err1]
        if text:
            seg += ["", "", "", "", "", "", text]  # ERR-8 user message is ignored by old parsers
        return fs.join(seg)
    erl = ""
    if loc.segment:
        bits = [loc.segment, str(loc.sequence)]
        for v in (loc.field, loc.repetition if loc.field is not None else None, loc.component,
                  loc.subcomponent):
            bits.append("" if v is None else str(v))
        erl = cs.join(bits).rstrip(cs)
    cwe = cs.join([err.code, escape(code_text, enc), "HL70357"])
    seg = ["ERR", "", erl, cwe, err.severity, "", "", text, text]
    return fs.join(seg).rstrip(fs)


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out) or (2, 5)


def build_ack(header: Header | None, code: str, now: datetime, *, text: str = "",
              errors: tuple[AckError, ...] | list[AckError] = (), mode: str = "auto",
              control_id: str | None = None, sender: tuple[str, str] | None = None) -> bytes:
    """The ACK message (unframed bytes) for ``header``; ``header=None`` for unreadable input.

    ``code`` is the original-mode code (AA, AE, AR); ``mode`` decides whether CA/CE/CR is sent.
    ``sender``: MSH-3/MSH-4 of the ACK (the channel's identity, HD components written with
    ``^``); default: the message's MSH-5/MSH-6.
    """
    enc = header.encoding if header else DEFAULT_ENCODING
    fs, cs = enc.field, enc.component or "^"
    send_code = ack_code(code, header, mode)
    version = (header.version if header and header.version else "2.5.1")
    ctl = control_id or new_control_id(now)
    if header is not None:
        trigger = header.trigger
        msh9 = cs.join(["ACK", trigger, "ACK"]) if _version_tuple(version) >= (2, 4) else (
            cs.join(["ACK", trigger]) if trigger else "ACK")
        if not trigger:
            msh9 = "ACK"
        f = header.msh
        fields = ["MSH", enc.msh2, f[5], f[6], f[3], f[4], hl7_timestamp(now), "", msh9, ctl,
                  f[11] or "P", f[12] or version]
        if header.charset:
            fields += ["", "", "", "", "", f[18]]
        msa = ["MSA", send_code, escape(header.control_id, enc)]
    else:
        fields = ["MSH", enc.msh2, "", "", "", "", hl7_timestamp(now), "", "ACK", ctl, "P", version]
        msa = ["MSA", send_code, ""]
    if sender is not None:
        fields[2], fields[3] = (v.replace("^", cs) if cs != "^" else v for v in sender)
    if text:
        msa.append(escape(text[:80], enc))
    segments = [fs.join(fields), fs.join(msa)]
    for err in errors:
        segments.append(_err_segment(err, enc, version))
    body = "\r".join(segments) + "\r"
    codec = CHARSETS.get(header.charset.upper(), "utf-8") if header and header.charset else "utf-8"
    return body.encode(codec, "replace")
