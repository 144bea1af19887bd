"""What of a message the full-text index reads: the message without its embedded payloads.

An MDM's OBX-5 of type ``ED`` carries the document itself, Base64 (``HOSP^AP^PDF^Base64^JVBE…``):
~3,000 random "words" per 100 KB document, each a new term of the index, never a word anyone
searches for, and ~17× the CPU of the journal insert without them (docs/benchmarks.md, #21 MDM).
:func:`indexed_bytes` gives the bytes the full-text index reads instead of ``raw`` (the
``messages.search_raw`` column, migration ``0020``):

* the data (component 5 on) of every repetition of OBX-5 in an OBX whose value type (OBX-2) is
  ``ED`` is left out — its source application, type, subtype and encoding stay searchable;
* any other run of :data:`MIN_RUN` or more Base64 characters (a payload sent some other way) is
  left out too (no word is that long);
* everything else is the message's own bytes, as received, at most :data:`INDEXED_BYTES`.

``None`` when nothing was left out: the index then reads ``raw`` itself (no second copy of an
ADT message is stored). No imports beyond ``re``: ``schema`` uses it as the column's default.
"""

from __future__ import annotations

import re

INDEXED_BYTES = 200_000  # bytes of a message indexed for full text (embedded documents are large)
MIN_RUN = 512  # Base64 characters in a row that are a payload, not text

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# every Base64 character read as ``a``, every other as a space: a run is then found by
# ``bytes.find`` (C) instead of a regular expression tried at every position of the message
_AS_RUNS = bytes((0x61 if bytes([b]) in _BASE64 else 0x20) for b in range(256))
_RUN = b"a" * MIN_RUN
_RUN_END = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def _delimiters(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(field, component, repetition) separators of the message's header, HL7's defaults
    when it has none readable."""
    if raw[:3] in (b"MSH", b"FHS", b"BHS") and len(raw) >= 6:
        fs, cs, rs = raw[3:4], raw[4:5], raw[5:6]
        if len({fs, cs, rs}) == 3 and not (fs + cs + rs).isalnum() and not set(fs + cs + rs) & {10, 13}:
            return fs, cs, rs
    return b"|", b"^", b"~"


def _segment_end(raw: bytes, start: int) -> int:
    ends = [e for e in (raw.find(b"\r", start), raw.find(b"\n", start)) if e >= 0]
    return min(ends) if ends else len(raw)


def _ed_spans(raw: bytes, fs: bytes, cs: bytes, rs: bytes) -> list[tuple[int, int]]:
    """(start, end) of the data of every ED OBX-5 repetition: from its 4th component separator
    to the repetition's end. Positions only: the payload itself is never copied."""
    spans: list[tuple[int, int]] = []
    marker = b"OBX" + fs
    at = raw.find(marker)
    while at >= 0:
        end = _segment_end(raw, at)
        if at == 0 or raw[at - 1] in (10, 13):
            starts = [at]  # starts[k]: where field k begins
            p = at
            while len(starts) < 6:
                p = raw.find(fs, p, end)
                if p < 0:
                    break
                p += 1
                starts.append(p)
            if len(starts) == 6:
                f2_end = raw.find(fs, starts[2], end)
                kind = raw[starts[2] : f2_end if f2_end >= 0 else end].split(cs, 1)[0].strip().upper()
                if kind == b"ED":
                    value_end = raw.find(fs, starts[5], end)
                    value_end = end if value_end < 0 else value_end
                    rep = starts[5]
                    while rep <= value_end:
                        rep_end = raw.find(rs, rep, value_end)
                        rep_end = value_end if rep_end < 0 else rep_end
                        q = rep
                        for _ in range(4):
                            q = raw.find(cs, q, rep_end)
                            if q < 0:
                                break
                            q += 1
                        if q > 0 and q - 1 < rep_end:
                            spans.append((q - 1, rep_end))
                        rep = rep_end + 1
        at = raw.find(marker, end)
    return spans


def _base64_runs(text: bytes) -> list[tuple[int, int]]:
    """(start, end) of every run of MIN_RUN or more Base64 characters."""
    runs_of = text.translate(_AS_RUNS)
    spans: list[tuple[int, int]] = []
    at = runs_of.find(_RUN)
    while at >= 0:
        m = _RUN_END.match(text, at)
        end = m.end() if m else at + MIN_RUN
        spans.append((at, end))
        at = runs_of.find(_RUN, end)
    return spans


def _cut(text: bytes, spans: list[tuple[int, int]]) -> bytes:
    pieces, pos = [], 0
    for start, end in spans:
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    return b"".join(pieces)


def indexed_bytes(raw: bytes | None) -> bytes | None:
    """The bytes of ``raw`` the full-text index reads, ``None`` if they are ``raw`` itself."""
    if not raw:
        return None
    raw = bytes(raw)
    fs, cs, rs = _delimiters(raw)
    text = raw
    spans = _ed_spans(raw, fs, cs, rs) if b"OBX" + fs in raw else []
    if spans:
        text = _cut(raw, spans)
    runs = _base64_runs(text) if len(text) >= MIN_RUN else []
    if runs:
        text = _cut(text, runs)
    return text[:INDEXED_BYTES] if spans or runs else None
