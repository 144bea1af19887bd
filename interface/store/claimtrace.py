"""The claim-trace hook (``INTERFACE_CLAIM_TRACE``): every claim of work keys
appended to a file, so the multi-process tests can prove no key was held twice.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("interface.ops.cluster")


TRACE_PATH = os.environ.get("INTERFACE_CLAIM_TRACE") or None


# -- the claim trace (tests) ------------------------------------------------------------------


def _trace_write(lines: list[str]) -> None:
    fd = os.open(TRACE_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, "".join(lines).encode())
    finally:
        os.close(fd)


def trace_claims(conn, rows, keys: dict[int, set[str]]) -> None:
    """Record ``claim`` now (the locks are held) and ``release`` when the transaction ends,
    before the COMMIT/ROLLBACK is sent, so each recorded span lies inside the real lock span."""
    if not rows:
        return
    from sqlalchemy import event

    pid = os.getpid()
    pairs = [(r.id, k) for r in rows for k in sorted(keys.get(r.id, {r.key}))]
    now = time.monotonic_ns()
    _trace_write([f"claim {pid} {now} {item} {key}\n" for item, key in pairs])
    ended = []

    def release(_conn) -> None:
        if ended:
            return
        ended.append(True)
        t = time.monotonic_ns()
        _trace_write([f"release {pid} {t} {item} {key}\n" for item, key in pairs])

    event.listen(conn, "commit", release)
    event.listen(conn, "rollback", release)


@dataclass
class Span:
    pid: int
    key: str
    item: int
    start: int
    end: int | None  # None: the process died holding it


def read_trace(path: str | os.PathLike) -> list[Span]:
    """Claim spans from a trace file; a claim never released ends at None."""
    spans: list[Span] = []
    open_: dict[tuple[int, int, str], Span] = {}
    for line in Path(path).read_text().splitlines():
        try:  # a line cut short by SIGKILL is skipped
            kind, pid, t, item, key = line.split(" ", 4)
            ident, t = (int(pid), int(item), key), int(t)
        except ValueError:
            continue
        if kind == "claim":
            span = Span(int(pid), key, int(item), t, None)
            spans.append(span)
            open_[ident] = span
        elif ident in open_:
            open_.pop(ident).end = t
    return spans


def overlaps(spans: list[Span], death: dict[int, int] | None = None) -> list[tuple[Span, Span]]:
    """Pairs of spans of one key held by two processes at the same time. ``death``: pid ->
    monotonic ns when it was killed, which ends its unreleased spans (default: never)."""
    death = death or {}
    by_key: dict[str, list[tuple[int, int, Span]]] = {}
    for s in spans:
        end = s.end if s.end is not None else death.get(s.pid, 2**63)
        by_key.setdefault(s.key, []).append((s.start, end, s))
    bad = []
    for items in by_key.values():
        items.sort(key=lambda x: x[0])
        reach_end, reach = None, None
        for start, end, s in items:
            if reach is not None and start < reach_end and reach.pid != s.pid:
                bad.append((reach, s))
            if reach_end is None or end > reach_end:
                reach_end, reach = end, s
    return bad


# -- listening sockets shared by the children --------------------------------------------------
