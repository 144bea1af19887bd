"""Wire and engine events (``events`` rows) in words for the dashboard: one sentence each, with
a link to where to look (the channel, its messages, the alert, the error queue), never raw JSON.

An event's detail is our own text (a limit, a reload summary, a file:line problem) or, for
alerts, our own JSON payload: no message content ever reaches it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class EventWords:
    sentence: str
    link: str | None
    link_text: str | None
    tone: str  # info | warn | bad


_WIRE = {
    "refused_peer": ("A connection from {peer} to {ch} was refused: the address is not allowed.", "warn"),
    "refused_paused": ("A connection from {peer} to {ch} was refused: the channel is paused.", "warn"),
    "too_many_connections": ("A connection from {peer} to {ch} was refused: {detail}.", "warn"),
    "too_many_connections_from_peer": ("A connection from {peer} to {ch} was refused: {detail}.", "warn"),
    "frame_too_large": (
        "A frame from {peer} on {ch} was too large and its connection was closed ({detail}).",
        "bad",
    ),
    "idle_timeout": ("The idle connection from {peer} to {ch} was closed.", "info"),
    "frame_timeout": ("The connection from {peer} to {ch} was closed: {detail}.", "warn"),
    "slow_sender": (
        "The connection from {peer} to {ch} was closed for sending too slowly ({detail}).",
        "warn",
    ),
    "partial_bytes_cap": ("The connection from {peer} to {ch} was closed: {detail}.", "warn"),
}


def _ch(channel: str | None) -> str:
    return f"channel {channel}" if channel else "the engine"


def _channel_link(channel: str | None) -> tuple[str | None, str | None]:
    if not channel:
        return None, None
    return f"/channels/{quote(channel, safe='')}", f"Channel {channel}"


def describe(kind: str, channel: str | None, peer: str | None, detail: str | None) -> EventWords:
    """One event as a sentence and a link."""
    detail = (detail or "").strip()
    link, text = _channel_link(channel)
    if kind in _WIRE:
        template, tone = _WIRE[kind]
        sentence = template.format(
            peer=peer or "an unknown address",
            ch=_ch(channel),
            detail=detail.rstrip(".") or "a limit was reached",
        )
        return EventWords(sentence, link, text, tone)
    if kind in ("alert", "alert_resolved"):
        try:
            p = json.loads(detail) if detail else {}
        except ValueError:
            p = {}
        if not isinstance(p, dict):
            p = {}
        summary = str(p.get("summary") or p.get("rule") or "an alert").rstrip(".")
        rule = p.get("rule")
        if kind == "alert":
            sentence = f"Alert {rule}: {summary}." if rule else f"Alert: {summary}."
            tone = "bad"
        else:
            sentence = (
                f"Alert {rule} is resolved: {summary.removeprefix('resolved: ')}."
                if rule
                else "An alert is resolved."
            )
            tone = "info"
        dest = p.get("destination")
        if channel and dest and kind == "alert":
            return EventWords(
                sentence,
                f"/errors?status=error&channel={quote(channel, safe='')}",
                f"Error queue of {channel}",
                tone,
            )
        return EventWords(sentence, link, text, tone)
    if kind == "config_reloaded":
        return EventWords(
            f"The configuration was reloaded{': ' + detail.rstrip('.') if detail else ''}.",
            "/channels",
            "Channels",
            "info",
        )
    if kind == "config_rejected":
        first = detail.splitlines()[0] if detail else ""
        more = len(detail.splitlines()) - 1 if detail else 0
        extra = f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else ""
        return EventWords(
            f"A reload was rejected; the engine kept its configuration. {first}{extra}".strip(),
            "/channels",
            "Channels",
            "bad",
        )
    words = kind.replace("_", " ")
    sentence = f"{words.capitalize()} on {_ch(channel)}" + (f" from {peer}" if peer else "")
    return EventWords(sentence + (f": {detail}" if detail else "") + ".", link, text, "info")
