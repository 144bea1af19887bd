"""The engine decides: raw bytes in, an Outcome (status + the exact ACK bytes) out.

``Engine.receive_many`` is synchronous and transport-free: it reads each message's header, decides
what the message is (accepted, duplicate, quarantined, rejected), writes every decision to the
journal in **one transaction**, commits, and only then returns the ACKs. With a processor, the
same transaction also applies what it can: the store items of ``ack: on_process`` channels
(their errors become AE), and those of ``apply: inline`` channels that are first in line for
their patient (the ACK is unchanged; see docs/queues.md). The transport calls it
through a group-commit writer thread (``interface.engine.writer``); tests call it directly: raw bytes in,
(ACK bytes, rows) out.

The outcome table (ARCHITECTURE.md) lives in :func:`Engine._prepare` and :meth:`Engine._commit`.
"error queue: yes" is one work item in status ``error`` (destination ``rejected``, ``quarantine``
or ``batch``) with the reason and location, resubmitted through these same checks
(``interface.engine.readmit``):

=================================  ===========  =====================  ============
outcome                            stored       ACK                    error queue
=================================  ===========  =====================  ============
committed (+processed: on_process,  yes          AA / CA                -
  or apply: inline)
duplicate id, same body            already      stored ACK, same bytes -
duplicate id, different body       quarantined  AR / CR, ERR 205       yes
unreadable / no MSH                raw          AR, ERR 100            yes
no MSH-10                          raw          AR, ERR 101 @ MSH-10   yes
MSH-11 not the channel's (T, D)    raw          AR, ERR 202 @ MSH-11   yes
MSH-12 not a version it takes      raw          AR, ERR 203 @ MSH-12   yes
type the channel does not accept   raw          AR, ERR 200 / 201      yes
fails ``validation: structure``    raw          AE / CE, ERR 100 / 101 yes
several MSH, no FHS/BHS            each its own one ACK frame each     as each
  (``multi_message: reject``)      raw, whole   AR, ERR 100 @ MSH(2)   yes
batch (FHS/BHS)                    each its own BHS, ACKs, BTS        as each
  BTS-1 / FTS-1 count wrong        + the frame  + ERR W @ BTS-1/FTS-1  yes (batch)
reading the frame raised (a bug)   raw          AE, ERR 207            yes
mapping error with on_process      yes + error  AE / CE, ERR @ field   yes
cannot commit                      no           AE / CE, ERR 207       logged
=================================  ===========  =====================  ============

Every frame is decided on its own: an exception while reading one frame or building its ACK
makes that frame's AE (``_poisoned``, ``receipt.safe_ack``), and a transaction that fails on
anything but the database is retried frame by frame (``_commit_singly``): one malformed frame
never costs the other frames of its commit group their ACK.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as DBEngine
from sqlalchemy.exc import SQLAlchemyError

from interface.config import routing
from interface.config.channels import Channel
from interface.engine import destinations, receipt
from interface.engine.controls import NO_CONTROLS
from interface.engine.inline import InlineApply
from interface.engine.outcome import (
    Group,
    Inbound,
    Outcome,
    Processor,
    _batch_outcome,
    _code_of,
    _missing_message_type,
    _Prepared,
    _split_outcome,
    body_hash,
)
from interface.hl7 import ack as acks
from interface.hl7.errors import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    HL7Error,
    Location,
    ParseError,
)
from interface.hl7.identity import pick_mrn
from interface.hl7.message import (
    Header,
    batch_control_id,
    batch_count_problems,
    decode,
    find_segments,
    has_several_messages,
    header_from_text,
    is_batch,
    split_message_bytes,
    split_messages,
)
from interface.store import health, journal, sanitize

log = logging.getLogger("interface.engine.inbound")


MERGE_TRIGGERS = frozenset(
    {
        "A34",
        "A35",
        "A36",
        "A37",
        "A39",
        "A40",
        "A41",
        "A42",
        "A44",
        "A45",
        "A46",
        "A47",
        "A48",
        "A49",
        "A50",
        "A51",
    }
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Engine(InlineApply):
    def __init__(
        self,
        db: DBEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
        processor: Processor | None = None,
        validator: Callable[[str, Header], list[HL7Error]] | None = None,
        events: Callable[[Channel, str], str | None] | None = None,
    ):
        self.db = db
        self.clock = clock
        self.processor = processor
        self.validator = validator
        # why no destination can apply a trigger event (AR 201 at receipt); the processor's by default
        self.events = events or (processor.unapplied_event if processor is not None else None)
        self.controls = NO_CONTROLS  # a paused destination is not applied inline (engine.controls)

    # -- public -------------------------------------------------------------------------------

    def receive(self, channel: Channel, raw: bytes, peer: str | None = None) -> Outcome:
        return self.receive_many([Inbound(channel, raw, peer)])[0]

    def receive_many(self, inbound: list[Inbound]) -> list[Outcome]:
        """Decide, journal and commit a group of frames; one Outcome per frame, in order."""
        return self.commit_group(self.prepare_group(inbound))

    def admit(
        self, conn: Connection, inb: Inbound, now: datetime, parent_id: int | None = None
    ) -> list[Outcome]:
        """Decide and journal one frame on ``conn`` (a transaction the caller owns and commits):
        the clerk's resubmit of a message refused at receipt goes through exactly the checks and
        the duplicate detection a received frame does (``interface.engine.readmit``). Rows get
        ``parent_id``; nothing is applied here (the worker takes the items)."""
        group = Group([inb], [], set(), now)
        group.prepared = self._prepare(inb, 0, now, group)
        if len(group.prepared) > 1 or group.prepared[0].row.batch_index is not None:
            group.batch_groups.add(0)
        for p in group.prepared:
            p.row.parent_id = parent_id
        self._journal(conn, group.prepared, now)
        [out] = self._collect(group)
        return out.messages

    def prepare_group(self, inbound: list[Inbound], group: "Group | None" = None) -> "Group":
        """Decide what each frame is, and parse and map what ``apply: inline`` will apply — no
        database. With ``group``, the frames join it (the journal writer adds frames that
        arrive while it waits for the write lock: see ``interface.engine.writer``)."""
        now = self.clock()
        if group is None:
            group = Group([], [], set(), now)
        base = len(group.inbound)
        prepared: list[_Prepared] = []
        for i, inb in enumerate(inbound, start=base):
            try:
                items = self._prepare(inb, i, now, group)
            except Exception as exc:  # never the group's: this frame alone is answered AE
                items = [self._poisoned(inb, i, now, exc, "reading")]
            if len(items) > 1 or (items and items[0].row.batch_index is not None):
                group.batch_groups.add(i)
            prepared.extend(items)
        self._prepare_inline(prepared)
        group.inbound.extend(inbound)
        group.prepared.extend(prepared)
        group.now = now
        return group

    def commit_group(self, group: "Group", conn: Connection | None = None) -> list[Outcome]:
        """Journal (and apply) a prepared group in one transaction — on ``conn`` if given (the
        writer's, already holding the write lock) — and return its outcomes, in order."""
        try:
            self._commit(group.prepared, group.now, conn)
        except SQLAlchemyError as exc:
            return self.fail_group(group, exc)
        except Exception as exc:  # a bug with one frame must not cost the others their commit
            log.error(
                "journal transaction failed (%s); committing its %d frame(s) one by one",
                type(exc).__name__,
                len(group.inbound),
            )
            self._commit_singly(group, conn)
        else:
            health.record_commit_ok()
        return self._collect(group)

    def fail_group(self, group: "Group", exc: BaseException) -> list[Outcome]:
        """Outcomes for a group that was not committed (``exc``: why, logged by its type only: a
        database error's text can quote values): every frame gets the "not accepted, please
        resend" answer (AE / CE, ERR 207), whatever was decided for it."""
        log.error("journal commit failed for %d message(s): %s", len(group.prepared), type(exc).__name__)
        health.record_commit_failure(exc)  # /api/health: degraded, and why
        for p in group.prepared:
            p.outcome = self._failure(p, group.now)
        return self._collect(group)

    def _commit_singly(self, group: "Group", conn: Connection | None) -> None:
        """After a transaction failed on something other than the database: each frame in its
        own transaction; a frame that fails again is stored as a rejection of its raw bytes
        (:meth:`_poisoned`), and if even that fails it is answered "not stored" (AE, ERR 207)."""
        by_frame: dict[int, list[_Prepared]] = {}
        for p in group.prepared:
            by_frame.setdefault(p.group, []).append(p)
        out: list[_Prepared] = []
        for i, inb in enumerate(group.inbound):
            items = by_frame.get(i, [])
            for p in items:
                p.outcome = None
                p.row.item_ids.clear()
                p.row.applied = False
            try:
                self._commit(items, group.now, conn)
            except SQLAlchemyError as exc:
                log.error("journal commit failed for frame %d: %s", i, type(exc).__name__)
                for p in items:
                    p.outcome = self._failure(p, group.now)
            except Exception as exc:
                items = [self._poisoned(inb, i, group.now, exc, "storing")]
                try:
                    self._commit(items, group.now, conn)
                except Exception as again:
                    log.error("could not store frame %d either: %s", i, type(again).__name__)
                    items[0].outcome = self._failure(items[0], group.now)
            out.extend(items)
        group.prepared = out

    # -- deciding (pure, before the transaction) ---------------------------------------------

    def _prepare(self, inb: Inbound, group: int, now: datetime, g: "Group | None" = None) -> list[_Prepared]:
        """One frame's messages: one, an FHS/BHS batch (each message its own row; the BTS/FTS
        counts checked), or several MSH without a batch header (split, or refused whole)."""
        decoded = decode(inb.raw, inb.channel.fallback_codec)
        text = decoded.text
        batch = is_batch(text)
        split = not batch and has_several_messages(text)
        if not (batch or split):
            return [self._prepare_one(inb, group, now, inb.raw, text, decoded.warning)]
        try:
            texts = split_messages(text)
        except ParseError as exc:
            return [self._reject(inb, group, now, None, exc, decoded.warning)]
        if split and len(texts) < 2:  # "MSH" that only looked like a second header
            return [self._prepare_one(inb, group, now, inb.raw, text, decoded.warning)]
        if split and inb.channel.multi_message == "reject":
            try:
                header = header_from_text(texts[0])
            except ParseError:
                header = None
            return [self._reject(inb, group, now, header, receipt.frame_problem(len(texts)), decoded.warning)]
        pieces = split_message_bytes(inb.raw)
        if len(pieces) != len(texts):  # cannot cut the bytes the same way: re-encode the text
            pieces = [t.encode(decoded.charset, "replace") for t in texts]
        out = []
        for idx, t in enumerate(texts):
            try:
                p = self._prepare_one(inb, group, now, pieces[idx], t, decoded.warning)
            except Exception as exc:  # this message alone: the frame's others are decided as usual
                p = self._poisoned(inb, group, now, exc, "reading", pieces[idx])
            p.row.batch_index = idx
            out.append(p)
        if g is not None and split:
            g.split_groups.add(group)
        if batch:
            problems = batch_count_problems(text)
            if problems:
                out.append(self._envelope(inb, group, now, text, problems))
                if g is not None:
                    g.count_problems[group] = problems
        return out

    def _envelope(self, inb: Inbound, group: int, now: datetime, text: str, problems) -> _Prepared:
        """The batch frame itself, journalled when its BTS/FTS counts disagree with what it holds:
        one row with the whole frame's bytes and one error item (reason ``batch_count``) for a
        clerk — the messages themselves are decided and stored each on its own."""
        row = self._row(inb, now, inb.raw, None, "error", "")
        row.control_id = batch_control_id(text)[:199] or None
        row.message_type = "batch"
        first = problems[0]
        row.error_code = SEGMENT_SEQUENCE_ERROR
        row.error_text = "; ".join(p.text for p in problems)[:2000]
        row.work = [
            journal.WorkSpec(
                "batch",
                (),
                status="error",
                reason="batch_count",
                error_location=str(first.location),
                last_error=row.error_text,
            )
        ]
        return _Prepared(row, None, inb.channel, group, envelope=True)

    def _poisoned(
        self, inb: Inbound, group: int, now: datetime, exc: BaseException, what: str, raw: bytes | None = None
    ) -> _Prepared:
        """A frame whose reading or storing raised (a bug, or input no one foresaw): stored as
        received, rejected with AE, ERR 207, and put in the error queue; its ACK is built
        without trusting what its header says (``receipt.safe_ack``). Logged by type only."""
        log.error("channel=%s %s a frame failed: %s", inb.channel.name, what, type(exc).__name__)
        raw = inb.raw if raw is None else raw
        try:
            header = receipt.bare_header(header_from_text(decode(raw).text))
        except Exception:
            header = None
        err = HL7Error(
            f"unexpected {type(exc).__name__} while {what} the message; it is kept for a clerk",
            None,
            APPLICATION_INTERNAL_ERROR,
            reason="processing_error",
        )
        row = self._row(inb, now, raw, None, "rejected", "")
        if header is not None:
            row.control_id = header.control_id or None
        row.error_code = err.code
        row.error_text = err.text
        row.work = [self._rejection_item(err)]
        p = _Prepared(row, header, inb.channel, group)
        self._set_ack(p, "AE", now, errors=[acks.AckError(err.code, err.text)], text=err.text)
        return p

    @staticmethod
    def _rejection_item(err: HL7Error, reason: str | None = None) -> journal.WorkSpec:
        """The error-queue item of a message rejected at receipt: raw bytes, reason, location."""
        loc = str(err.location) if err.location is not None and err.location.segment else None
        return journal.WorkSpec(
            "rejected",
            (),
            status="error",
            reason=reason or err.reason,
            error_location=loc,
            last_error=str(err)[:4000],
        )

    def _prepare_one(
        self, inb: Inbound, group: int, now: datetime, raw: bytes, text: str, warning: str
    ) -> _Prepared:
        ch = inb.channel
        try:
            header = header_from_text(text)
        except ParseError as exc:
            return self._reject(inb, group, now, None, exc, warning, raw)
        if (refused := sanitize.nul_in_message(text, header)) is not None:  # same on both databases
            return self._reject(
                inb,
                group,
                now,
                sanitize.header_clean(header),
                refused,
                warning,
                raw,
                code="AE",
                ack_header=header,
            )  # the ACK echoes MSH-10 exactly (0x00 as \X00\)
        if not header.control_id:
            err = HL7Error(
                "MSH-10 (message control id) is empty",
                Location("MSH", 1, 10),
                REQUIRED_FIELD_MISSING,
                reason="missing_field",
            )
            return self._reject(inb, group, now, header, err, warning, raw)
        if (err := _missing_message_type(header)) is not None:
            return self._reject(inb, group, now, header, err, warning, raw)
        err = routing.refusal(ch, header)  # match: / identity.refuse_unaddressed
        if err is not None:
            return self._reject(inb, group, now, header, err, warning, raw)
        problem = receipt.check_header(ch, header)
        if problem is not None:  # a test message, or a version the channel does not speak: AR
            return self._reject(inb, group, now, header, problem, warning, raw)
        if not ch.accepts(header.message_code, header.trigger):
            code = (
                UNSUPPORTED_EVENT_CODE if ch.accepts_code(header.message_code) else UNSUPPORTED_MESSAGE_TYPE
            )
            what = "event" if code == UNSUPPORTED_EVENT_CODE else "message type"
            err = HL7Error(
                f"channel {ch.name} does not accept {what} {header.message_type or '(none)'}",
                Location("MSH", 1, 9),
                code,
                reason="unsupported_event",
            )
            return self._reject(inb, group, now, header, err, warning, raw)
        if self.events is not None and (why := self.events(ch, header.trigger)):
            err = HL7Error(
                f"channel {ch.name}: {why}",
                Location("MSH", 1, 9, component=2),
                UNSUPPORTED_EVENT_CODE,
                reason="unsupported_event",
            )
            return self._reject(inb, group, now, header, err, warning, raw)
        if self.validator is not None and ch.validation == "structure":
            problems = self.validator(text, header)
            if problems:
                # Content errors (segment sequence, required fields): AE, not AR. AR says "not
                # acceptable here (type, version, processing id), try elsewhere/later"; AE says the
                # message itself is wrong, so resending it unchanged will not help.
                return self._reject(
                    inb, group, now, header, problems[0], warning, raw, extra=problems[1:], code="AE"
                )

        keys, mrn = self.ordering_keys(ch, header, text)
        if (refused := sanitize.mrn_too_long(mrn)) is not None:  # longer than the mrn columns
            return self._reject(inb, group, now, header, refused, warning, raw, code="AE")
        row = self._row(inb, now, raw, header, "accepted", warning)
        row.patient_id = mrn
        row.dedup_key = "|".join(
            (ch.name, header.sending_application, header.sending_facility, header.control_id)
        )[:700]
        row.work = destinations.work_specs(ch, keys, header)  # one per destination, in its lane
        p = _Prepared(row, header, ch, group)
        errors = []
        if warning:
            errors.append(acks.AckError("0", warning, None, "W"))
        p.errors = errors
        self._set_ack(p, "AA", now, errors=errors, strict=True)  # raises: the frame is _poisoned
        return p

    def ordering_keys(self, ch: Channel, header: Header, text: str) -> tuple[tuple[str, ...], str | None]:
        """The patient key(s) a message is ordered by: ``mrn:<MRN>`` from PID-3 by the channel's
        rule, plus the prior patient from MRG-1 for merges. No MRN: a key of its own (it orders
        with nothing and will fail mapping with a clear reason)."""
        enc = header.encoding
        mrn = None
        for pid in find_segments(text, "PID")[:1]:
            fields = pid.split(enc.field)
            if len(fields) > 3:
                mrn = pick_mrn(fields[3], enc, ch.mrn_rule)
            if mrn is None and len(fields) > 2 and fields[2]:
                mrn = pick_mrn(fields[2], enc, ch.mrn_rule)  # v2.2/2.3 senders: PID-2 external id
        keys = [f"mrn:{mrn}"] if mrn else [f"msg:{ch.name}:{header.sending_application}:{header.control_id}"]
        if header.trigger in MERGE_TRIGGERS:
            for mrg in find_segments(text, "MRG")[:1]:
                fields = mrg.split(enc.field)
                if len(fields) > 1:
                    prior = pick_mrn(fields[1], enc, ch.mrn_rule) or pick_mrn(
                        fields[1], enc, type(ch.mrn_rule)(ch.mrn_rule.authority, ())
                    )
                    if prior and f"mrn:{prior}" not in keys:
                        keys.append(f"mrn:{prior}")
        return tuple(keys), mrn

    def _row(
        self, inb: Inbound, now: datetime, raw: bytes, header: Header | None, status: str, warning: str
    ) -> journal.JournalRow:
        row = journal.JournalRow(
            channel=inb.channel.name,
            received_at=now,
            peer=inb.peer,
            raw=raw,
            body_sha256=body_hash(raw),
            status=status,
            ack=None,
            ack_code=None,
            warning=warning or None,
        )
        if header is not None:
            for name, value in journal.header_columns(header).items():
                setattr(row, name, value)
        return row

    def _reject(
        self,
        inb,
        group,
        now,
        header,
        err: HL7Error,
        warning,
        raw=None,
        extra=(),
        code: str = "AR",
        ack_header: Header | None = None,
    ) -> _Prepared:
        raw = inb.raw if raw is None else raw
        row = self._row(inb, now, raw, header, "rejected", warning)
        row.error_code = err.code
        row.error_text = str(err)[:2000]
        unreadable = err.reason == "processing_error" and err.code == SEGMENT_SEQUENCE_ERROR
        row.work = [self._rejection_item(err, "unparseable" if unreadable else None)]
        p = _Prepared(row, ack_header or header, inb.channel, group)
        errors = [acks.AckError(e.code, e.text, e.location) for e in (err, *extra)]
        self._set_ack(p, code, now, errors=errors, text=err.text)
        p.header = header
        return p

    def _set_ack(
        self, p: _Prepared, code: str, now: datetime, *, errors=(), text: str = "", strict: bool = False
    ) -> None:
        """The message's ACK. An error answer is always built (``receipt.safe_ack`` falls back to
        a bare header); ``strict`` (the AA of an accepted message) raises instead, so that a
        message whose ACK cannot be built is never accepted with a garbled answer."""
        mode = p.channel.ack.mode
        send = receipt.safe_should_send(p.header, code, mode)
        build = acks.build_ack if strict else receipt.safe_ack
        data = (
            build(p.header, code, now, text=text, errors=errors, mode=mode, sender=p.channel.ack_sender)
            if send
            else None
        )
        p.row.ack = data
        p.row.ack_code = receipt.safe_ack_code(code, p.header, mode) if send else None

    # -- the transaction -------------------------------------------------------------------

    def _commit(self, prepared: list[_Prepared], now: datetime, conn: Connection | None = None) -> None:
        if conn is None:
            with self.db.begin() as conn:
                self._journal(conn, prepared, now)
        else:
            with conn.begin():
                self._journal(conn, prepared, now)

    def _journal(self, conn: Connection, prepared: list[_Prepared], now: datetime) -> None:
        accepted = [p for p in prepared if p.row.status == "accepted"]
        existing = journal.find_existing(conn, [p.row.dedup_key for p in accepted])
        seen: dict[str, _Prepared] = {}
        to_insert: list[_Prepared] = []
        for p in prepared:
            if p.row.status != "accepted":
                to_insert.append(p)
                continue
            key = p.row.dedup_key
            prior = existing.get(key)
            earlier = seen.get(key)
            if prior is not None or earlier is not None:
                same = (prior[1] if prior else earlier.row.body_sha256) == p.row.body_sha256
                if same:
                    stored_ack = prior[2] if prior else earlier.row.ack
                    p.outcome = Outcome(
                        "duplicate",
                        stored_ack,
                        _code_of(stored_ack),
                        p.header.control_id,
                        p.header.message_type,
                        prior[0] if prior else None,
                    )
                    continue
                self._quarantine(p, now)
                to_insert.append(p)
                continue
            seen[key] = p
            to_insert.append(p)
        first = self._first_in_line(conn, to_insert)
        for p in first:
            p.row.applied = True
        ids = journal.insert_rows(conn, [p.row for p in to_insert], now)
        for p, mid in zip(to_insert, ids):
            p.outcome = Outcome(
                p.row.status,
                p.row.ack,
                p.row.ack_code,
                p.header.control_id if p.header else None,
                p.header.message_type if p.header else None,
                mid,
                p.row.error_text or "",
            )
        if first:
            self._apply_new(conn, first, now)
        if self.processor is not None:
            self._process_now(
                conn,
                [
                    p
                    for p in to_insert
                    if p.row.status == "accepted" and p.channel.ack.timing(p.header) == "on_process"
                ],
                now,
            )
            self._apply_inline(
                conn,
                [
                    p
                    for p in to_insert
                    if p.inline is not None and p.row.status == "accepted" and not p.row.applied
                ],
                now,
            )

    # -- assembling -------------------------------------------------------------------------

    def _collect(self, group: "Group") -> list[Outcome]:
        per_group: dict[int, list[_Prepared]] = {}
        for p in group.prepared:
            if not p.envelope:
                per_group.setdefault(p.group, []).append(p)
        out = []
        for i in range(len(group.inbound)):
            items = per_group.get(i, [])
            if i not in group.batch_groups:
                out.append(items[0].outcome)
                continue
            parts = [p.outcome for p in items]
            if i in group.split_groups:
                out.append(_split_outcome(parts))
                continue
            enc = next((p.header.encoding for p in items if p.header is not None), None)
            out.append(
                _batch_outcome(
                    parts,
                    group.now,
                    enc,
                    group.count_problems.get(i, ()),
                    items[0].channel.ack_sender if items else None,
                )
            )
        return out
