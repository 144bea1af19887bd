"""Value transforms used by mappings: HL7 dates and times to ISO 8601, case, trimming.

Pure functions on ``str``; no I/O. A value that cannot be read raises :class:`BadValue` (the
mapping interpreter turns it into ``errors.DataError`` with the field's location). Error texts
never include the value itself: they may end up in logs, and values are patient data.

Precision is kept, as HL7 DTM carries it: ``1980`` -> ``1980``, ``198001`` -> ``1980-01``,
``19800101`` -> ``1980-01-01``, ``198001011230`` -> ``1980-01-01T12:30+01:00`` (the offset is the
message's own, or the channel time zone's offset at that local time when the sender gave none).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6}|\d{1,4})?)?)?)?)?)?"
    r"([+-]\d{4})?\Z"
)


_PLAIN_LENGTHS = frozenset((4, 6, 8, 10, 12, 14))


class BadValue(ValueError):
    """The value cannot be transformed; the message text is safe to show (no patient data)."""

    code: str  # the HL7 error code, when the raiser sets one (a table look-up); read with getattr


@lru_cache(maxsize=64)
def zone(name: str | None) -> ZoneInfo | timezone:
    """The time zone for an IANA name (``None`` or ``""`` -> UTC). Raises BadValue if unknown."""
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadValue(f"unknown time zone {name!r}") from None


def is_time_zone(name: str) -> bool:
    try:
        zone(name)
    except BadValue:
        return False
    return True


# (year, month, day, hour, minute, second, fraction, UTC offset), as written
_Parts = tuple[str, str | None, str | None, str | None, str | None, str | None, str | None, str | None]


@lru_cache(maxsize=4096)
def _parse(value: str) -> _Parts:
    if len(value) in _PLAIN_LENGTHS and value.isascii() and value.isdigit():
        # The common shapes (YYYY, YYYYMMDD, YYYYMMDDHHMMSS...: ASCII digits only, no fraction or
        # offset) by slicing; exactly what the regex below gives for them.
        year, month, day = value[:4], value[4:6] or None, value[6:8] or None
        hour, minute, second = value[8:10] or None, value[10:12] or None, value[12:14] or None
        frac = offset = None
    else:
        m = _DTM.match(value)
        if not m:
            raise BadValue("not a valid HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
        year, month, day, hour, minute, second, frac, offset = m.groups()
    if frac and frac[0] != ".":
        # Some senders run milliseconds on without the dot (20110613122406637): digits past
        # the seconds can only be a fraction, so read them as one.
        frac = "." + frac
    try:
        datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),
        )
    except ValueError:
        raise BadValue("not a valid HL7 date/time (a part is out of range)") from None
    if offset:
        hh, mm = int(offset[1:3]), int(offset[3:5])
        if hh > 14 or mm > 59:
            raise BadValue("not a valid HL7 date/time (bad UTC offset)")
    return year, month, day, hour, minute, second, frac, offset


def _date_part(year: str, month: str | None, day: str | None) -> str:
    out = year
    if month:
        out += "-" + month
        if day:
            out += "-" + day
    return out


def hl7_date(value: str) -> str:
    """HL7 DT/DTM -> ISO date with the sender's precision (``1980``, ``1980-01``, ``1980-01-02``).

    A time part, if any, is dropped: the date is the one the sender wrote (a birth date is a
    local calendar date, never shifted between zones).
    """
    return _date(value)


@lru_cache(maxsize=4096)
def _date(value: str) -> str:
    year, month, day, *_ = _parse(value.strip())
    return _date_part(year, month, day)


def hl7_timestamp(value: str, tz_name: str | None = "UTC") -> str:
    """HL7 DTM -> ISO 8601 with the sender's precision and a UTC offset when there is a time.

    Date-only values stay dates. Values with a time but no offset get the offset of ``tz_name``
    (IANA, e.g. ``Europe/London``) for that local time; an explicit offset is kept as sent.
    """
    return _timestamp(value, tz_name)


@lru_cache(maxsize=8192)
def _timestamp(value: str, tz_name: str | None) -> str:
    """hl7_timestamp, cached: a message repeats its times (MSH-7, EVN-2...), and so do the
    messages of one visit (PV1-44)."""
    year, month, day, hour, minute, second, frac, offset = _parse(value.strip())
    out = _date_part(year, month, day)
    if not hour:
        return out
    out += "T" + hour
    if minute:
        out += ":" + minute
        if second:
            out += ":" + second
            if frac:
                out += frac
    if offset:
        return out + offset[:3] + ":" + offset[3:]
    tz = zone(tz_name)
    if tz is timezone.utc:
        return out + "+00:00"
    assert month is not None and day is not None  # an hour is written after them (YYYYMMDDHH)
    local = datetime(int(year), int(month), int(day), int(hour), int(minute or 0), min(int(second or 0), 59))
    delta = tz.utcoffset(local)
    return out + _format_offset(delta)


def _format_offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def upper(value: str) -> str:
    return value.upper()


def lower(value: str) -> str:
    return value.lower()


def title(value: str) -> str:
    return value.title()


def trim(value: str) -> str:
    return value.strip()


# Transforms that take no argument, by the name analysts write in YAML.
SIMPLE = {
    "upper": upper,
    "lower": lower,
    "title": title,
    "trim": trim,
    "date": hl7_date,
}
# Transforms that also need the channel's params (time zone).
WITH_TIME_ZONE = {"timestamp": hl7_timestamp}
NAMES = sorted([*SIMPLE, *WITH_TIME_ZONE, "table"])
