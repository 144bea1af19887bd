"""Destinations of a channel and the lanes their work items are ordered in.

Every accepted message gets one work item per destination of its channel (``store``, ``mllp``,
``file``), plus, later, one ``application_ack`` item when the sender asked for an enhanced-mode
application ACK. Items are ordered per *lane key*:

* ``store`` destinations order by the plain key (``mrn:<MRN>``; a merge holds both patients'
  keys). The chart and the document index are one store, so every channel that writes them keeps
  one order per patient, and a document held for an unknown patient is released by that key.
* every other destination orders by ``out:<channel>/<destination>|<key>``: a downstream outage,
  or a message the downstream refuses, blocks only that destination's queue for that key; the
  store and the other destinations keep flowing.

Which key a message has is the channel's ``order_by``: ``patient`` (default: the MRN of the
channel's assigning authority, both MRNs for merges), ``channel`` (one queue for the whole
channel, strictly in arrival order) or ``message`` (no ordering: every message its own key).

Also here: the file drop (atomic write: temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from interface.config.channels import Channel, Destination
from interface.hl7.errors import PermanentError, TransientError
from interface.hl7.message import Header
from interface.store.journal import WorkSpec

OUT_PREFIX = "out:"
APPLICATION_ACK = "application_ack"
CONNECTION_ACK = "connection_ack"  # application ACKs sent back on the sender's connection


def base_keys(ch: Channel, patient_keys: tuple[str, ...], header: Header) -> tuple[str, ...]:
    """The message's ordering key(s) by the channel's ``order_by``."""
    if ch.order_by == "channel":
        return (f"channel:{ch.name}",)
    if ch.order_by == "message":
        return (f"msg:{ch.name}:{header.sending_application}:{header.control_id}",)
    return tuple(patient_keys)


def lane_prefix(channel: str, destination: str) -> str:
    return f"{OUT_PREFIX}{channel}/{destination}|"


def lane_keys(channel: str, dest: Destination, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys one destination's item is ordered by (see the module docstring)."""
    from interface.store.sanitize import fit_key

    if dest.type == "store":
        return tuple(fit_key(k) for k in keys)
    prefix = lane_prefix(channel, dest.name)
    return tuple(fit_key(prefix + k) for k in keys)


def plain_key(key: str) -> str:
    """``out:adt/lab|mrn:1`` -> ``mrn:1`` (store keys are returned unchanged)."""
    if key.startswith(OUT_PREFIX) and "|" in key:
        return key.split("|", 1)[1]
    return key


def work_specs(ch: Channel, patient_keys: tuple[str, ...], header: Header) -> list[WorkSpec]:
    """The work items to create for an accepted message: one per destination, each in its lane."""
    keys = base_keys(ch, patient_keys, header)
    return [WorkSpec(d.name, lane_keys(ch.name, d, keys)) for d in ch.destinations]


def destination_for(ch: Channel, name: str) -> Destination | None:
    """A configured destination by name; ``application_ack`` is the channel's return address."""
    for d in ch.destinations:
        if d.name == name:
            return d
    ret = ch.ack.application_ack
    if name in (APPLICATION_ACK, CONNECTION_ACK) and ret is not None:  # connection_ack items are
        # the relay's (interface.engine.connection_acks); any other worker sends them to the return address
        return Destination(
            name=APPLICATION_ACK,
            type="mllp",
            host=ret.host,
            port=ret.port,
            timeout_seconds=ret.timeout_seconds,
            connect_timeout_seconds=ret.connect_timeout_seconds,
            retry=ret.retry,
            tls=ret.tls,
            expect_ack=ret.expect_ack,
        )
    return None


def is_outbound(ch: Channel, name: str) -> bool:
    d = destination_for(ch, name)
    return d is not None and d.type != "store"


# -- file drop ---------------------------------------------------------------------------------

FILENAME_FIELDS = (
    "channel",
    "destination",
    "message_id",
    "item_id",
    "control_id",
    "message_type",
    "received",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(pattern: str, values: dict) -> str:
    """Fill the destination's filename pattern; each value is made safe for a file name
    (no separators, no ``..``), so a control id can never escape the directory."""
    safe = {k: _UNSAFE.sub("_", str(values.get(k, "") or "")).strip(".") or "_" for k in FILENAME_FIELDS}
    try:
        name = pattern.format_map(safe)
    except (KeyError, IndexError, ValueError) as exc:
        raise PermanentError(
            f"filename pattern {pattern!r} is invalid: {exc}", reason="processing_error"
        ) from None
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise PermanentError(f"filename pattern {pattern!r} gives no usable name", reason="processing_error")
    return name


def drop_file(directory: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` atomically and durably: a reader sees either no file
    or the whole message. A redelivery after a crash replaces the file with the same bytes."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / name)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:  # disk full, permissions, unmounted share: may work later
        raise TransientError(f"cannot write to {d}: {exc.strerror or exc}") from None
    return d / name
