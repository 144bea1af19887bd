"""What an analyst paused, as this process sees it, and the answer to a frame on a paused channel.

:class:`Controls` keeps the paused channels and destinations of ``channel_controls``
(:mod:`interface.store.channel_controls`) in memory: the listener checks a frozenset per frame
and per connection, the workers pass the paused destinations to their claim query. An engine
process refreshes it about once a second (``interface.ops.runtime.ConsoleThread``), and at
once when the pause was made through its own console.

Pausing a channel's intake (like Mirth's "pause channel": the source stops taking messages,
the destinations keep delivering what was queued):

* a new connection to an endpoint whose channels are all paused is refused (accepted and
  closed at once, event ``refused_paused``);
* a frame on a connection already open is answered AE (original mode) or CE (enhanced mode)
  with ERR 207 "channel ... is paused; not accepted, please resend later", and nothing is
  stored: the sender keeps the message and resends it once the channel is resumed;
* a frame whose sender asked for no error ACK (MSH-15 NE / SU) cannot be told: its connection
  is closed, which every sender treats as "not delivered".
"""

from __future__ import annotations

from datetime import datetime

from interface.config.channels import Channel
from interface.engine import receipt
from interface.engine.outcome import Outcome
from interface.hl7 import ack as acks
from interface.hl7.errors import APPLICATION_INTERNAL_ERROR
from interface.hl7.message import decode, header_from_text
from interface.store import channel_controls


class Controls:
    """The paused channels (intake) and (channel, destination) queues, refreshed from the table."""

    def __init__(self) -> None:
        self.intake: frozenset[str] = frozenset()
        self.destinations: frozenset[tuple[str, str]] = frozenset()

    def refresh(self, conn) -> bool:
        """Read the table; True when something changed."""
        rows = channel_controls.paused(conn)
        intake = frozenset(r.channel for r in rows if r.destination == channel_controls.INTAKE)
        dests = frozenset(
            (r.channel, r.destination) for r in rows if r.destination != channel_controls.INTAKE
        )
        changed = intake != self.intake or dests != self.destinations
        self.intake, self.destinations = intake, dests
        return changed

    def refresh_from(self, db) -> bool:
        with db.connect() as conn:
            return self.refresh(conn)

    def intake_paused(self, channel: str) -> bool:
        return channel in self.intake

    def all_paused(self, channels) -> bool:
        """Every channel on an endpoint paused: new connections are refused."""
        return bool(self.intake) and all(c.name in self.intake for c in channels)

    def destination_paused(self, channel: str, destination: str) -> bool:
        return (channel, destination) in self.destinations


def paused_text(channel: str) -> str:
    return f"channel {channel} is paused; message not accepted, please resend later"


def paused_outcome(channel: Channel, raw: bytes, now: datetime) -> Outcome | None:
    """The answer to a frame on a paused channel: AE / CE, ERR 207, nothing stored; None when
    the sender asked for no error ACK (the caller closes the connection instead)."""
    try:
        header = header_from_text(decode(raw, channel.fallback_codec).text)
    except Exception:  # unreadable: the bare-header fallback ACK
        header = None
    mode = channel.ack.mode
    if not receipt.safe_should_send(header, "AE", mode):
        return None
    text = paused_text(channel.name)
    err = acks.AckError(APPLICATION_INTERNAL_ERROR, text)
    data = receipt.safe_ack(header, "AE", now, text=text, errors=[err], mode=mode, sender=channel.ack_sender)
    return Outcome(
        "paused",
        data,
        receipt.safe_ack_code("AE", header, mode),
        header.control_id if header else None,
        header.message_type if header else None,
        None,
        text,
    )


NO_CONTROLS = Controls()  # never refreshed: nothing paused (tests, tools that run no console)
