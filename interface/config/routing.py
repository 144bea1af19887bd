"""Which channel a frame belongs to: listen endpoints shared by several channels.

Channels with the same ``listen`` string (a port other than 0) share one listener. For each
frame the listener picks the channel whose ``match:`` block accepts the message's MSH-3..MSH-6
(and whose ``allow:`` list accepts the peer); ``interface check`` guarantees that at most one can
(:func:`interface.config.channels.shared_endpoint_problems`). A frame that matches none goes to the
endpoint's first channel, whose own ``match:`` then refuses it in the engine (AR, ERR at the
field, stored and visible) — the protocol speaks, the engine decides.

The header is read from the bytes (MSH is ASCII in every character set HL7 allows on MLLP), so
routing never decodes the message body. A single-channel listener skips all of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the --workers supervisor uses endpoint_key without pydantic
    from interface.config.channels import Channel


def endpoint_key(ch: Channel, endpoint: str | None = None) -> str:
    """The listener a channel is served by: its endpoint string, or its own name for a port-0
    (or otherwise unshareable) endpoint, which binds a fresh port each time."""
    ep = endpoint or ch.listen
    parts = ep.split(":")
    if parts[0] == "unix" or len(parts) < 2 or parts[1] == "0":
        return f"channel:{ch.name}"
    return ep


def endpoint_groups(
    channels: list[Channel], overrides: dict[str, str] | None = None
) -> dict[str, list[Channel]]:
    """Channels by the listener that serves them (``overrides``: channel -> endpoint, the
    ``--listen`` options), in channel order."""
    overrides = overrides or {}
    out: dict[str, list[Channel]] = {}
    for ch in channels:
        out.setdefault(endpoint_key(ch, overrides.get(ch.name)), []).append(ch)
    return out


def peek_header(raw: bytes) -> tuple[tuple[str, str, str, str], str] | None:
    """(MSH-3, MSH-4, MSH-5, MSH-6) of the frame's first MSH segment (a batch's first message),
    and the component separator; None when there is no readable MSH."""
    start = raw.find(b"MSH")
    if start < 0 or len(raw) < start + 8:
        return None
    end = len(raw)
    for sep in (b"\r", b"\n"):
        i = raw.find(sep, start)
        if 0 <= i < end:
            end = i
    seg = raw[start:end].decode("latin-1")
    fs = seg[3]
    parts = seg.split(fs)
    parts += [""] * (6 - len(parts))
    component = parts[1][:1] or "^"
    return (parts[2].strip(), parts[3].strip(), parts[4].strip(), parts[5].strip()), component


class Router:
    """Picks the channel for each frame on one listener."""

    def __init__(self, channels: list[Channel]):
        if not channels:
            raise ValueError("a listener needs a channel")
        self.channels = list(channels)

    @property
    def first(self) -> Channel:
        return self.channels[0]

    def allows(self, host: str) -> bool:
        """A connection is accepted if any channel on the endpoint allows its address."""
        return any(ch.allows(host) for ch in self.channels)

    def select(self, raw: bytes, host: str = "") -> Channel:
        if len(self.channels) == 1:
            return self.channels[0]
        candidates = [ch for ch in self.channels if not host or ch.allows(host)] or self.channels
        peeked = peek_header(raw)
        if peeked is not None:
            values, component = peeked
            for ch in candidates:
                if ch.match is None or ch.match.mismatch(values, component) is None:
                    return ch
        return candidates[0]


_FIELD_NAMES = {
    3: "sending application",
    4: "sending facility",
    5: "receiving application",
    6: "receiving facility",
}


def refusal(ch: Channel, header):
    """Why ``ch`` refuses this message by its header, or None: its ``match:`` does not take
    MSH-3..MSH-6, or (``identity.refuse_unaddressed``) MSH-5/MSH-6 do not name the channel.
    An :class:`~interface.hl7.errors.HL7Error` with ERR-3 103 (table value not found: MSH-3..6 are
    HD values of user tables 0361/0362) at the field; the text names systems, never patients."""
    from interface.hl7.errors import TABLE_VALUE_NOT_FOUND, HL7Error, Location

    if ch.match is None and (ch.identity is None or not ch.identity.refuse_unaddressed):
        return None
    comp = header.encoding.component or "^"
    values = (
        header.sending_application,
        header.sending_facility,
        header.receiving_application,
        header.receiving_facility,
    )
    n = ch.match.mismatch(values, comp) if ch.match is not None else None
    if n is not None:
        text = (
            f"no channel here takes messages with MSH-{n} ({_FIELD_NAMES[n]}) "
            f"{values[n - 3]!r} (channel {ch.name} takes {getattr(ch.match, _attr(n))})"
        )
    else:
        n = ch.identity.mismatch(values[2], values[3], comp) if ch.identity is not None else None
        if n is None:
            return None
        want = ch.identity.application if n == 5 else ch.identity.facility
        text = (
            f"message is addressed to MSH-{n} ({_FIELD_NAMES[n]}) {values[n - 3]!r}, "
            f"not to this channel ({ch.name}: {want!r})"
        )
    return HL7Error(text, Location("MSH", 1, n), TABLE_VALUE_NOT_FOUND, reason="unsupported_event")


def _attr(n: int) -> str:
    return _FIELD_NAMES[n].replace(" ", "_")
