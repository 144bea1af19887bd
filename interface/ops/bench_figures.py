"""The benchmark's figures: database probe, percentiles, ACK and end-to-end."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from interface.ops.bench_peers import SendResult


def fsync_ms(directory: Path, n: int = 200) -> dict:
    """What one durable commit costs the disk at least: ``n`` times, 4 KB appended to a file in
    ``directory`` (where the database lives) and ``os.fsync``'d; p50/p99 in ms. The engine's SQLite commit fsyncs its ``-wal``
    file once (``store.db.WalSync``) before the ACK, so one connection's ACK p50 cannot be
    lower than this p50 (issue #21 compares the two)."""
    path = Path(directory) / "fsync-probe.bin"
    took = []
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, block)
            t0 = time.perf_counter()
            os.fsync(fd)
            took.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    took.sort()
    return {
        "n": n,
        "p50_ms": round(1000 * took[len(took) // 2], 3),
        "p99_ms": round(1000 * took[min(len(took) - 1, int(len(took) * 0.99))], 3),
    }


class Probe:
    """Reads the engine's database (its own connection, plain reads: never takes the write lock)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine

        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        self.engine = (
            create_engine(url, poolclass=None, hide_parameters=True)
            if not url.startswith("sqlite")
            else create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)
        )

    def scalar(self, sql: str, **params):
        from sqlalchemy import text

        with self.engine.connect() as c:
            return c.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params):
        from sqlalchemy import text

        with self.engine.connect() as c:
            return c.execute(text(sql), params).all()

    def max_message_id(self) -> int:
        return self.scalar("SELECT COALESCE(MAX(id), 0) FROM messages") or 0

    def status_counts(self, base: int) -> dict[str, int]:
        return dict(
            self.rows("SELECT status, COUNT(*) FROM work_items WHERE message_id > :b GROUP BY status", b=base)
        )

    def wait_done(
        self,
        base: int,
        expected: int,
        *,
        exclude_key: str | None = None,
        timeout: float = 600.0,
        interval: float = 0.02,
    ) -> float:
        """Poll until ``expected`` items of messages after ``base`` exist and none of them is
        pending (items for ``exclude_key`` aside); returns the wall-clock time it was seen."""
        sql = (
            "SELECT COUNT(*), SUM(CASE WHEN status IN ('pending', 'held') THEN 1 ELSE 0 END) "
            "FROM work_items WHERE message_id > :b"
        )
        params: dict = {"b": base}
        if exclude_key is not None:
            sql += " AND key != :k"
            params["k"] = exclude_key
        deadline = time.monotonic() + timeout
        from sqlalchemy import text

        with self.engine.connect() as c:
            while True:
                total, waiting = c.execute(text(sql), params).one()
                c.rollback()
                if total >= expected and not waiting:
                    return time.time()
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"queue not drained after {timeout:.0f} s: {total} items, {waiting} waiting"
                    )
                time.sleep(interval)

    def done_times(self, base: int) -> dict[str, float]:
        """control id -> when its (last) item was done, epoch seconds."""
        out: dict[str, float] = {}
        for cid, at in self.rows(
            "SELECT m.control_id, w.updated_at FROM work_items w JOIN messages m "
            "ON m.id = w.message_id WHERE m.id > :b AND w.status = 'done'",
            b=base,
        ):
            t = _epoch(at)
            if t > out.get(cid, 0.0):
                out[cid] = t
        return out

    def close(self) -> None:
        self.engine.dispose()


def _epoch(v) -> float:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v.timestamp()


# -- figures ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s))) - 1))]


def ms(v: float) -> float:
    return round(v * 1000, 2)


def ack_figures(r: SendResult) -> dict:
    return {
        "messages": r.count,
        "seconds": round(r.elapsed, 3),
        "msgs_per_s": round(r.count / r.elapsed, 1),
        "ack_p50_ms": ms(pct(r.latencies, 50)),
        "ack_p99_ms": ms(pct(r.latencies, 99)),
        "ack_codes": r.codes,
        "mismatched": r.mismatched,
        "client_cpu_share": round(r.cpu / r.elapsed, 2),
    }


def e2e_figures(
    r: SendResult, done: dict[str, float], drained_at: float, started: float, only: set[str] | None = None
) -> dict:
    # the chart commit is known to be done by max(the item's updated_at, the ACK's arrival): an
    # inline-applied item commits before its ACK is sent, a queued one after its transaction began
    lat = [
        max(done[c], r.acked_at.get(c, 0.0)) - t
        for c, t in r.sent_at.items()
        if c in done and (only is None or c in only)
    ]
    n = len(lat)
    span = drained_at - started
    return {
        "done": n,
        "seconds": round(span, 3),
        "msgs_per_s": round(n / span, 1) if span > 0 else None,
        "e2e_p50_ms": ms(pct(lat, 50)),
        "e2e_p99_ms": ms(pct(lat, 99)),
    }


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Sizes:
    adt: dict[int, int]  # connections -> messages
    mdm: dict[int, int]
    backlog: int
    warmup: int
    scale: int = 3000  # ADT messages per process count (scale scenario)
    journal: int = 2000  # ADT messages per (journal size, patients) cell
    search: int = 1_000_000  # messages bulk-loaded for the search scenario


def sizes(quick: bool, conns: list[int], scale: float = 1.0) -> Sizes:
    if quick:
        sz = Sizes(
            {c: 30 if c == 1 else 160 for c in conns},
            {c: 4 if c == 1 else 16 for c in conns},
            120,
            16,
            60,
            40,
            2000,
        )
    else:
        sz = Sizes(
            {c: 600 if c == 1 else 4000 for c in conns}, {c: 60 if c == 1 else 200 for c in conns}, 3000, 200
        )
    if scale != 1.0:
        n = lambda v: max(2, int(v * scale))  # noqa: E731
        sz = Sizes(
            {c: n(v) for c, v in sz.adt.items()},
            {c: n(v) for c, v in sz.mdm.items()},
            n(sz.backlog),
            n(sz.warmup),
            n(sz.scale),
            n(sz.journal),
            max(100, int(sz.search * scale)),
        )
    return sz
