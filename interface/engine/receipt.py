"""What a frame must be before its messages are taken in, and ACKs that cannot fail.

Pure helpers of :mod:`interface.engine.inbound` (no database):

* :func:`check_header` — the channel's rules on one message's header: MSH-11 processing id
  (HL7 table 0103, compared on PT-1 so ``P^T`` is production) and MSH-12 version id (table 0104).
  Each failure is an :class:`~interface.hl7.errors.HL7Error` with its table-0357 code and location.
* :func:`frame_problem` — a frame without FHS/BHS that holds several MSH on a channel that says
  ``multi_message: reject``.
* :func:`safe_ack` — ``ack.build_ack`` that never raises: if building the ACK from the header
  fails (a bug, or a header no one foresaw), it is built again from a bare header that keeps only
  MSH-10 (ASCII), then with no header, then as a constant. One malformed frame must never take
  its commit group down (docs/reliability.md "Frames and commit groups").
"""

from __future__ import annotations

import logging
from datetime import datetime

from interface.config.channels import Channel
from interface.hl7 import ack as acks
from interface.hl7.errors import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    HL7Error,
    Location,
)
from interface.hl7.message import DEFAULT_ENCODING, Header

log = logging.getLogger("interface.engine.inbound")

PROCESSING_IDS = {"P": "production", "T": "training", "D": "debugging"}  # HL7 table 0103


def check_header(ch: Channel, header: Header) -> HL7Error | None:
    """The first of the channel's header rules this message breaks (MSH-11, then MSH-12), or None."""
    pid = header.processing_id
    if not ch.accepts_processing_id(pid):
        if not pid:
            return HL7Error(
                "MSH-11 (processing id) is empty",
                Location("MSH", 1, 11),
                REQUIRED_FIELD_MISSING,
                reason="unsupported_processing_id",
            )
        what = PROCESSING_IDS.get(pid.upper())
        label = f"{pid} ({what})" if what else pid
        return HL7Error(
            f"channel {ch.name} accepts processing id {', '.join(ch.processing_ids)} only, "
            f"not {shown(label, 40)}",
            Location("MSH", 1, 11, component=1),
            UNSUPPORTED_PROCESSING_ID,
            reason="unsupported_processing_id",
        )
    version = header.version
    if not ch.accepts_version(version):
        if not version:
            return HL7Error(
                "MSH-12 (version id) is empty",
                Location("MSH", 1, 12),
                REQUIRED_FIELD_MISSING,
                reason="unsupported_version",
            )
        return HL7Error(
            f"channel {ch.name} does not accept HL7 version {shown(version)}",
            Location("MSH", 1, 12, component=1),
            UNSUPPORTED_VERSION_ID,
            reason="unsupported_version",
        )
    return None


def frame_problem(count: int) -> HL7Error:
    """``multi_message: reject``: the whole frame is refused, pointing at the second MSH."""
    return HL7Error(
        f"frame holds {count} messages (MSH segments) without a batch header; this channel "
        "takes one message per frame",
        Location("MSH", 2),
        SEGMENT_SEQUENCE_ERROR,
        reason="unparseable",
    )


def _ascii(value: str, limit: int = 40) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in value[:limit])


def shown(value: str, limit: int = 20) -> str:
    """A header value quoted in an error text, safe and unambiguous in any character set:
    printable ASCII as is, anything else as ``<U+00B2>`` (``2.5²`` -> ``2.5<U+00B2>``)."""
    out = "".join(c if 32 <= ord(c) < 127 else f"<U+{ord(c):04X}>" for c in value[:limit])
    return out + ("..." if len(value) > limit else "")


def bare_header(header: Header) -> Header | None:
    """A header that keeps only MSH-10 (printable ASCII, 20 characters) and the message code,
    with default delimiters and version: what an ACK can always be built from."""
    try:
        ctl = _ascii(header.control_id, 20).replace("?", "")
        code = "".join(c for c in header.message_code if c.isascii() and c.isalnum())[:3]
        trigger = "".join(c for c in header.trigger if c.isascii() and c.isalnum())[:3]
        msh = ["MSH", "|", DEFAULT_ENCODING.msh2] + [""] * 19
        msh[10] = ctl
        ack_types = [
            "".join(c for c in v if c.isascii() and c.isalpha())[:2]
            for v in (header.accept_ack_type, header.application_ack_type)
        ]
        msh[15], msh[16] = ack_types
        return Header(
            DEFAULT_ENCODING,
            tuple(msh),
            "",
            "",
            "",
            "",
            "",
            code,
            trigger,
            "",
            ctl,
            "",
            "",
            ack_types[0],
            ack_types[1],
            "",
        )
    except Exception:
        return None


def constant_ack(code: str, now: datetime) -> bytes:
    """The last resort: an ACK of plain ASCII that depends on nothing received."""
    try:
        stamp = acks.hl7_timestamp(now)
    except Exception:
        stamp = ""
    return (
        f"MSH|^~\\&|||||{stamp}||ACK||P|2.5.1\rMSA|{code}|\rERR|||207^Application internal error^HL70357|E\r"
    ).encode("ascii", "replace")


def safe_ack(
    header: Header | None,
    code: str,
    now: datetime,
    *,
    text: str = "",
    errors=(),
    mode: str = "auto",
    sender: tuple[str, str] | None = None,
) -> bytes:
    """``ack.build_ack(...)``, falling back (module docstring) instead of raising."""
    try:
        return acks.build_ack(header, code, now, text=text, errors=errors, mode=mode, sender=sender)
    except Exception as exc:  # type only: the exception's text may quote the message
        log.error("ACK building failed (%s); answering from a bare header", type(exc).__name__)
    internal = [acks.AckError(APPLICATION_INTERNAL_ERROR, "the acknowledgement could not be built in full")]
    bare = bare_header(header) if header is not None else None
    attempts = [(bare, list(errors), text), (bare, internal, "")] if bare is not None else []
    attempts.append((None, internal, ""))
    for h, errs, t in attempts:
        try:
            return acks.build_ack(h, code, now, text=t, errors=errs, mode=mode, sender=sender)
        except Exception as exc:
            log.error("ACK building failed again (%s)", type(exc).__name__)
    return constant_ack(code, now)


def safe_ack_code(code: str, header: Header | None, mode: str) -> str:
    try:
        return acks.ack_code(code, header, mode)
    except Exception:
        return code


def safe_should_send(header: Header | None, code: str, mode: str) -> bool:
    try:
        return acks.should_send_accept_ack(header, code, mode)
    except Exception:
        return True
