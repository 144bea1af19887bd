"""Reliability tests R1-R6 of RELIABILITY.md, short forms (``make soak``: SOAK=1, long forms).

Each runs on SQLite and, with INTERFACE_TEST_DB_URL set, on PostgreSQL. The real engine runs as
a subprocess (tests/reliability_kit.py) except R4, which drives Engine + Worker in-process.
What each test proves and its pass figures: docs/reliability.md.
"""
from __future__ import annotations

import os
import random

import pytest

from interface.db import make_engine

from .reliability_kit import (EngineProcess, Progress, build_workload, check_history, join_senders,
                              run_senders, wait_drained)

SOAK = os.environ.get("SOAK") == "1"
SEED = int(os.environ.get("RELIABILITY_SEED", "20261123"))


@pytest.fixture
def checkdb(db_url):
    """The database the engine subprocess writes, opened by the test for the checker."""
    engines = []

    def open_():
        eng = make_engine(db_url)
        engines.append(eng)
        return eng

    yield open_
    for e in engines:
        e.dispose()


def _figures(name: str, report) -> None:
    print(f"\n{name}: {report.figures}")


@pytest.mark.slow
def test_r1_crash_under_load(db_url, checkdb, tmp_path):
    """R1: SIGKILL the engine at random moments under load; senders resend what was not ACKed.
    0 ACKed messages missing, 0 effects twice, per-patient apply order = send order, drained."""
    if SOAK:
        patients, per_patient, n_senders, kills = 300, 16, 8, 25
    else:
        patients, per_patient, n_senders, kills = 40, 8, 4, 3
    rng = random.Random(SEED)
    scripts = build_workload(patients, per_patient, n_senders, SEED, tag="K", mdm_share=0.2)
    sent = [m for s in scripts for m in s]
    total = len(sent)
    engine = EngineProcess(tmp_path / "r1", db_url)
    progress = Progress()
    engine.start()
    try:
        senders = run_senders(engine, scripts, progress)
        marks = sorted(rng.sample(range(total // 10, total * 9 // 10), kills))
        for mark in marks:
            assert progress.wait_for(mark, 180), f"stalled at {progress.count} ACKs:\n{engine.log_tail()}"
            engine.kill()
            engine.start()
        join_senders(senders, 600 if SOAK else 180)
        db = checkdb()
        wait_drained(db, 300 if SOAK else 120)
        report = check_history(db, sent)
    finally:
        engine.stop()
    report.figures.update(kills=engine.kills, answered_from_journal=engine.log_count("outcome=duplicate"))
    _figures("R1", report)
    assert report.violations == [], str(report)
    assert engine.kills == kills
    assert report.figures["acked"] == total and report.figures["items_done"] == total
    assert report.figures["resent"] > 0  # the kills did hit messages in flight
