"""In-process cost of one ADT message, stage by stage (no network, no subprocess).

``python -m interface.ops.benchprofile [N] [--profile] [--db URL]`` journals the bench's ADT mix
(``interface.ops.bench.adt_mix``, N messages over 16 "connections", interleaved) with
``Engine.receive_many`` in groups of 16, as the journal writer does, then drains it with
``Worker.run_once``, and prints CPU ms per message for each phase. The channel is switched to
``apply: queued`` so the two phases are measured apart; ``--inline`` keeps ``apply: inline``
(the default), where receiving applies too and the drain finds (almost) nothing. ``--profile`` adds a cProfile
of the drain (sorted by internal time). A fresh SQLite file in a temporary directory unless
``--db`` names another database (which must be empty). The trends are counted and flushed as
``interface run`` does (``--no-trends``: not). Used for docs/benchmarks.md ("Where one
ADT message's CPU goes"); the end-to-end figures come from ``interface bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from interface.config.channels import load_channels
from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound
from interface.engine.processing import Worker
from interface.ops.bench_workload import MIXES, adt, adt_mix, mdm_t02
from interface.ops.runtime import Settings, load_pipeline
from interface.store import channel_stats
from interface.store import db as dbmod
from interface.store.channel_stats import Recorder

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m interface.ops.benchprofile", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("n", nargs="?", type=int, default=3000, help="ADT messages (default 3000)")
    ap.add_argument("--profile", action="store_true", help="cProfile the drain (with --inline: the receive)")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--inline", action="store_true", help="apply: inline (receive applies too)")
    ap.add_argument(
        "--mix", choices=MIXES, default="realistic", help="the ADT mix (interface.ops.bench.adt_mix)"
    )
    ap.add_argument(
        "--mdm",
        action="store_true",
        help="100 KB MDM^T02 documents (interface.ops.bench_workload.mdm_t02) into the document "
        "index instead of the ADT mix (their patients are registered first, not measured)",
    )
    ap.add_argument(
        "--no-trends",
        action="store_true",
        help="without the trends counting (interface.store.channel_stats) `interface run` does",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="interface-benchprofile-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'p.db'}"
        db = dbmod.make_engine(url)
        dbmod.create_schema(db)
        channels = load_channels(ROOT / "channels")
        by_name = {c.name: c for c in channels}
        channel = by_name["mdm" if args.mdm else "adt"]
        channel = channel.model_copy(update={"apply": "inline" if args.inline else "queued"})
        settings = Settings(
            db_url=url,
            channels_dir=ROOT / "channels",
            mappings_dir=ROOT / "mappings",
            rules_file=ROOT / "rules" / "completeness.yaml",
        )
        clock = lambda: datetime.now(timezone.utc)  # noqa: E731
        worker = Worker(db, load_pipeline(settings, channels), clock=clock)
        engine = Engine(db, clock=clock, processor=worker)
        if args.mdm:
            frames = _mdm_frames(engine, by_name["adt"], args.n)
        else:
            wl = adt_mix(args.n, 16, "P", seed=5, mix=args.mix)
            frames, queues = [], [list(c) for c in wl.per_conn]
            while any(queues):  # round robin over the connections, as they would arrive
                for q in queues:
                    if q:
                        frames.append(q.pop(0)[1][1:-2])  # strip the MLLP framing
        trends = None if args.no_trends else Recorder()
        worker.pipeline.stats = trends  # as interface run counts: per message, per frame, per item
        prof = cProfile.Profile() if args.profile else None
        if prof and args.inline:
            prof.enable()
        t0 = time.process_time()
        for i in range(0, len(frames), 16):
            started = time.monotonic()
            outs = engine.receive_many([Inbound(channel, f, "bench") for f in frames[i : i + 16]])
            if trends is not None:
                now, took = clock(), time.monotonic() - started
                for out in outs:
                    for o in out.messages:
                        trends.intake(channel.name, o.status, now)
                    trends.ack_latency(channel.name, now, took)
        if trends is not None:
            with db.begin() as conn:  # what the sync thread does every few seconds
                channel_stats.flush(conn, trends.take())
        t1 = time.process_time()
        if prof and not args.inline:
            prof.enable()
        items = 0
        while n := worker.run_once():
            items += n
        if trends is not None:
            with db.begin() as conn:
                channel_stats.flush(conn, trends.take())
        t2 = time.process_time()
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        db.dispose()
    print(
        f"{len(frames)} messages: receive {1000 * (t1 - t0) / len(frames):.3f} ms/msg, "
        f"drain {1000 * (t2 - t1) / max(items, 1):.3f} ms/item ({items} items, {worker.failed} failed)"
    )
    return 0


def _mdm_frames(engine: Engine, adt_channel, n: int) -> list[bytes]:
    """Register ``n // 2`` patients (A04, inline, not measured) and return ``n`` 100 KB MDM^T02
    frames for them, unframed."""
    rng = random.Random(5)
    patients = max(1, n // 2)
    reg = [
        adt("A04", f"P{i:06d}", f"PR{i:07d}", time.time() - 3600, visit=f"VP{i:06d}", klass="O").encode()
        for i in range(patients)
    ]
    adt_channel = adt_channel.model_copy(update={"apply": "inline"})
    for i in range(0, len(reg), 16):
        engine.receive_many([Inbound(adt_channel, f, "bench") for f in reg[i : i + 16]])
    return [
        mdm_t02(f"P{i % patients:06d}", f"DOC-P-{i}", f"PD{i:07d}", time.time(), rng)[1:-2] for i in range(n)
    ]


if __name__ == "__main__":
    raise SystemExit(main())
