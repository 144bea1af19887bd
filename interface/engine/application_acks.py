"""Enhanced-mode application ACKs: built when an item is done or failed and
queued for the channel's return address (or the same connection).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy import insert, select

from interface.config.channels import Channel
from interface.engine.destinations import APPLICATION_ACK, CONNECTION_ACK, lane_prefix, plain_key
from interface.hl7 import ack as acks
from interface.hl7.errors import HL7Error, ParseError
from interface.hl7.message import decode, header_from_text
from interface.store.journal import header_columns
from interface.store.schema import messages, work_items, work_keys

log = logging.getLogger("interface.engine.outbound")


def wants_application_ack(header, ok: bool) -> bool:
    """MSH-16: AL always, ER on error only, SU on success only; NE or empty: never."""
    rule = (header.application_ack_type or "").upper()
    return rule == "AL" or (rule == "ER" and not ok) or (rule == "SU" and ok)


def application_ack(
    header,
    err: HL7Error | None,
    now: datetime,
    *,
    accept_ack: str = "AL",
    sender: tuple[str, str] | None = None,
) -> bytes:
    """The application ACK (AA, or AE with ERR) for a processed message. It asks the return
    address for an accept ACK (MSH-15 ``accept_ack``: AL, or NE for a receiver that never
    answers) and no application ACK of its own (MSH-16 NE)."""
    if err is None:
        data = acks.build_ack(header, "AA", now, mode="original", sender=sender)
    else:
        code = getattr(err, "code", "207")
        data = acks.build_ack(
            header,
            "AE",
            now,
            text=getattr(err, "text", str(err)),
            mode="original",
            sender=sender,
            errors=[acks.AckError(code, getattr(err, "text", str(err)), getattr(err, "location", None))],
        )
    fs = header.encoding.field.encode("ascii")
    first, _, rest = data.partition(b"\r")
    parts = first.split(fs)
    parts += [b""] * (16 - len(parts))
    parts[14], parts[15] = accept_ack.encode("ascii"), b"NE"  # parts[n-1] is MSH-n
    return fs.join(parts) + b"\r" + rest


def queue_application_ack(conn, ch: Channel, item, err: Exception | None, now: datetime) -> int | None:
    """After a message's store item finished (done, or into the error queue), queue its
    application ACK when the channel has a return address (or ``ack.same_connection``) and
    MSH-16 asks for one. The ACK is journalled as a message of its own (``parent_id`` = the
    original) with one work item in lane ``out:<channel>/application_ack|<key>`` — or, with
    ``same_connection``, ``out:<channel>/connection_ack|<key>``, which the process holding the
    sender's connection writes back on it (:mod:`interface.engine.connection_acks`). Returns the work
    item id, or None."""
    ret = ch.ack.application_ack
    same = ch.ack.same_connection
    if (ret is None and not same) or ch.ack.mode == "original":
        return None
    stores = [d.name for d in ch.destinations if d.type == "store"]
    if not stores or item.destination != stores[0]:
        return None
    orig = conn.execute(
        select(messages.c.raw, messages.c.patient_id).where(messages.c.id == item.message_id)
    ).first()
    if orig is None:
        return None
    try:
        header = header_from_text(decode(orig.raw).text)
    except ParseError:
        return None
    if not wants_application_ack(header, err is None):
        return None
    hl7_err = err if isinstance(err, HL7Error) or err is None else HL7Error(str(err))
    # on the sender's own connection nothing answers it (MSH-15 NE): see interface.engine.connection_acks
    data = application_ack(
        header, hl7_err, now, accept_ack="NE" if same or not ret.expect_ack else "AL", sender=ch.ack_sender
    )
    ack_header = header_from_text(decode(data).text)
    mid = conn.execute(
        insert(messages)
        .values(
            channel=ch.name,
            received_at=now,
            peer=APPLICATION_ACK,
            raw=data,
            body_sha256=hashlib.sha256(data).hexdigest(),
            status="accepted",
            **header_columns(ack_header),
            patient_id=orig.patient_id,
            parent_id=item.message_id,
        )
        .returning(messages.c.id)
    ).scalar_one()
    dest = CONNECTION_ACK if same else APPLICATION_ACK
    key = lane_prefix(ch.name, dest) + plain_key(item.key)
    item_id = conn.execute(
        insert(work_items)
        .values(
            message_id=mid,
            channel=ch.name,
            destination=dest,
            key=key,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .returning(work_items.c.id)
    ).scalar_one()
    conn.execute(insert(work_keys).values(item_id=item_id, key=key))
    return item_id
