"""What a frame came to: the Inbound and Outcome types, a commit group, and how
several outcomes (a split frame, a batch) combine into one answer.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from interface.config.channels import Channel
from interface.hl7 import ack as acks
from interface.hl7.errors import REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE_ERROR, HL7Error, Location
from interface.hl7.message import CHARSETS, Header, header_from_text
from interface.store import journal

log = logging.getLogger("interface.engine.inbound")


@dataclass(slots=True)
class Inbound:
    channel: Channel
    raw: bytes
    peer: str | None = None


@dataclass(slots=True)
class Outcome:
    """What happened to one received frame. ``ack`` is None when nothing must be sent (MSH-15 NE)."""

    status: str  # accepted | processed | duplicate | quarantined | rejected | error
    ack: bytes | None
    ack_code: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    message_id: int | None = None
    text: str = ""
    # a frame that held several messages: one Outcome each, in order. ``split``: a frame without
    # FHS/BHS, answered with one ACK frame per message (``frames``); else a batch, answered with
    # one BHS..BTS frame (``ack``)
    parts: list["Outcome"] | None = None
    split: bool = False

    @property
    def frames(self) -> list[bytes]:
        """The ACK frames to write back on the connection, in order (none for MSH-15 NE)."""
        if self.split and self.parts is not None:
            return [p.ack for p in self.parts if p.ack is not None]
        return [self.ack] if self.ack is not None else []

    @property
    def messages(self) -> list["Outcome"]:
        """One Outcome per message of the frame (itself for a frame of one)."""
        return self.parts if self.parts is not None else [self]


class Processor(Protocol):
    """Applies stored work items inside the caller's transaction (for ``ack: on_process``, and
    ``apply: inline`` channels with ``ack: on_commit``)."""

    def process_now(self, conn, item_ids: list[int], now: datetime) -> dict[int, HL7Error | None]: ...

    def prepare(self, channel: str, destination: str, raw: bytes) -> Any: ...

    def apply_inline(self, conn, prepared: dict[int, Any], now: datetime) -> list[int]: ...

    def apply_new(self, conn, items: list, prepared: dict[int, Any], now: datetime) -> None: ...

    def unapplied_event(self, ch: Channel, trigger: str) -> str | None: ...


@dataclass(slots=True)
class _Prepared:
    row: journal.JournalRow
    header: Header | None
    channel: Channel
    group: int  # index of the inbound frame this message came from
    outcome: Outcome | None = None  # decided before the transaction (rejections)
    errors: list = field(default_factory=list)
    inline: list | None = None  # apply: inline: the work items' Prepared (parsed and mapped)
    envelope: bool = False  # a batch's own row (a count problem for the error queue), no outcome


@dataclass(slots=True)
class Group:
    """Frames decided and prepared by :meth:`Engine.prepare_group`, not committed yet."""

    inbound: list[Inbound]
    prepared: list[_Prepared]
    batch_groups: set[int]  # indexes of inbound frames that were batches (one outcome of many)
    now: datetime
    split_groups: set[int] = field(default_factory=set)  # of those, frames without FHS/BHS
    count_problems: dict[int, list] = field(default_factory=dict)  # batch frame -> BTS/FTS problems


def body_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _missing_message_type(header: Header) -> HL7Error | None:
    """MSH-9 is required (HL7 v2.5.1 2.14.9.9): empty, or without its message code (MSG-1), it
    is a required field missing (table 0357 code 101) at MSH-9 — never "unsupported type"."""
    if header.message_code:
        return None
    if not header.msh[9].strip():
        return HL7Error(
            "MSH-9 (message type) is empty",
            Location("MSH", 1, 9),
            REQUIRED_FIELD_MISSING,
            reason="missing_field",
        )
    return HL7Error(
        "MSH-9 has no message code (MSH-9.1)",
        Location("MSH", 1, 9, component=1),
        REQUIRED_FIELD_MISSING,
        reason="missing_field",
    )


def _code_of(ack: bytes | None) -> str | None:
    if not ack:
        return None
    i = ack.find(b"MSA")
    if i < 0 or len(ack) < i + 6:
        return None
    return ack[i + 4 : i + 6].decode("ascii", "replace")


def _worst(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """A frame's summary status and ACK code: the last failure's, else accepted; the worst code."""
    worst = "accepted"
    for o in outcomes:
        if o.status in ("rejected", "error", "quarantined"):
            worst = o.status
    codes = {o.ack_code for o in outcomes if o.ack_code}
    code = next((c for c in ("AR", "CR", "AE", "CE") if c in codes), next(iter(sorted(codes)), None))
    return worst, code


def _split_outcome(outcomes: list[Outcome]) -> Outcome:
    """A frame of several messages without FHS/BHS: each message answered with its own ACK
    frame, in order (``Outcome.frames``); the summary names the first control id."""
    worst, code = _worst(outcomes)
    first = outcomes[0] if outcomes else None
    return Outcome(
        worst,
        first.ack if first else None,
        code,
        first.control_id if first else None,
        first.message_type if first else None,
        None,
        f"{len(outcomes)} messages",
        parts=outcomes,
        split=True,
    )


def _batch_outcome(outcomes: list[Outcome], now: datetime, enc=None, problems=(), sender=None) -> Outcome:
    """One response for a framed FHS/BHS batch: the ACKs wrapped in BHS/BTS, written with the
    batch's own delimiters (those of its first readable message); BHS-3/BHS-4 are the channel's
    identity (``sender``) when it declares one. A BTS-1/FTS-1 count that
    disagrees with what was received adds an ERR (severity W, at that count) to the last ACK
    of the response and says so in the response's BTS-2 (batch comment)."""
    acks_ = [o.ack for o in outcomes if o.ack]
    worst, code = _worst(outcomes)
    if not acks_:  # every message said MSH-15 NE: nothing to send
        return Outcome(worst, None, None, None, "batch", None, f"{len(outcomes)} messages", parts=outcomes)
    stamp = acks.hl7_timestamp(now).encode()
    fs, msh2 = (enc.field, enc.msh2) if enc is not None else ("|", "^~\\&")
    app, fac = sender or ("", "")
    if enc is not None and enc.component and enc.component != "^":
        app, fac = app.replace("^", enc.component), fac.replace("^", enc.component)
    bhs = fs.join(["BHS", msh2, app, fac, "", "", ""]).encode("ascii", "replace") + stamp
    bts = f"BTS{fs}{len(acks_)}"
    if problems:
        acks_[-1] = _with_count_errors(acks_[-1], problems)
        bts += fs + "batch count mismatch: " + "; ".join(p.text.replace(fs, " ") for p in problems)[:200]
    body = bhs + b"\r" + b"".join(acks_) + bts.encode("ascii", "replace") + b"\r"
    return Outcome(worst, body, code, None, "batch", None, f"{len(outcomes)} messages", parts=outcomes)


def _with_count_errors(ack: bytes, problems) -> bytes:
    """``ack`` with ERR (severity W, code 100, at BTS-1/FTS-1) for a batch's count problems, in
    the delimiters, version and character set of that ACK. Below v2.5 an ACK has one ERR whose
    ERR-1 repeats: the problems are added as repetitions of the ERR-1 it may already have."""
    try:
        charset = "utf-8"
        text = ack.decode("utf-8", "replace")
        header = header_from_text(text)
        if header.charset:
            charset = CHARSETS.get(header.charset.upper(), "utf-8")
            text = ack.decode(charset, "replace")
        errs = [acks.AckError(SEGMENT_SEQUENCE_ERROR, p.text, p.location, "W") for p in problems]
        version = acks.ack_version(header)
        [*added] = acks.err_segments(errs, header.encoding, version)
        lines = [x for x in text.split("\r") if x]
        fs = header.encoding.field
        old = next((n for n, x in enumerate(lines) if x.startswith("ERR" + fs)), None)
        if old is not None and acks._version_tuple(version) < (2, 5) and header.encoding.repetition:
            lines[old] += header.encoding.repetition + added[0][4:]
        else:
            lines += added
        return ("\r".join(lines) + "\r").encode(charset, "replace")
    except Exception as exc:
        log.error("batch count ERR could not be built: %s", type(exc).__name__)
        return ack
