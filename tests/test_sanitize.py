"""Values the database refuses (NUL, lone surrogates, over-long values) and items that always
fail: the same answer on SQLite and PostgreSQL, and a failing item never fails its batch."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from interface.config.channels import load_channels
from interface.desk import errorqueue
from interface.engine.inbound import Engine
from interface.engine.processing import Worker
from interface.ops.runtime import Settings, load_pipeline
from interface.store import sanitize, workqueue
from interface.store.chart_schema import patients
from interface.store.schema import audit, messages, work_attempts, work_items

from .conftest import Clock
from .reliability_kit import ROOT, adt_message

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def adt():
    return [c for c in load_channels(ROOT / "channels") if c.name == "adt"][0]


@pytest.fixture
def setup(engine, adt, tmp_path):
    clock = Clock(T0)
    pipeline = load_pipeline(
        Settings(
            channels_dir=ROOT / "channels",
            mappings_dir=ROOT / "mappings",
            rules_file=None,
            var_dir=Path(tmp_path),
        ),
        [adt],
    )
    return Engine(engine, clock=clock), Worker(engine, pipeline, clock=clock, batch=64), clock


def _msa_err(ack: bytes) -> tuple[str, str]:
    segs = ack.decode().split("\r")
    msa = next(s for s in segs if s.startswith("MSA")).split("|")
    err = next(s for s in segs if s.startswith("ERR")).split("|")
    return msa[1], err


def _family(engine, mrn: str):
    with engine.connect() as conn:
        return conn.execute(select(patients.c.family).where(patients.c.mrn == mrn)).scalar()


def test_nul_byte_in_a_field_is_answered_ae_102_at_the_field_and_kept_raw(engine, setup, adt):
    """A literal NUL in PID-5: AE with ERR-3 102 at PID-5 (not CA and a worker that fails
    forever), stored as a rejected message with its bytes intact, and in the error queue as a
    "rejected" item a clerk can see (never a pending item the worker would retry)."""
    eng, worker, _ = setup
    raw = adt_message("NUL001", 1, "A04", "NUL-1").replace(b"REL^", b"RE\x00L^")
    out = eng.receive(adt, raw)
    code, err = _msa_err(out.ack)
    assert code == "AE"
    assert err[2] == "PID^1^5" and err[3].startswith("102")
    with engine.connect() as conn:
        row = conn.execute(select(messages.c.status, messages.c.raw, messages.c.error_code)).one()
        items = conn.execute(select(work_items.c.destination, work_items.c.status)).all()
    assert [tuple(i) for i in items] == [("rejected", "error")]
    assert (row.status, bytes(row.raw), row.error_code) == ("rejected", raw, "102")
    assert worker.run_once() == 0


def test_nul_in_msh10_rejected_with_clean_header_columns(engine, setup, adt):
    """A NUL in MSH-10 itself: AE 102 at MSH-10, the control id column stored with the byte
    escaped (\\X00\\), the raw bytes as sent."""
    eng, _, _ = setup
    raw = adt_message("NUL002", 1, "A04", "NUL\x002")
    out = eng.receive(adt, raw)
    code, err = _msa_err(out.ack)
    assert code == "AE" and err[2] == "MSH^1^10"
    with engine.connect() as conn:
        row = conn.execute(select(messages.c.control_id, messages.c.raw)).one()
    assert row.control_id == "NUL\\X00\\2" and bytes(row.raw) == raw


def test_escaped_nul_is_stored_as_the_hl7_escape_on_both_databases(engine, setup, adt):
    """A \\X00\\ escape (a NUL after unescaping) in PID-5.1 is applied, stored as the text
    \\X00\\ (PostgreSQL would refuse the byte; SQLite would keep it): the same on both."""
    eng, worker, _ = setup
    raw = adt_message("NUL003", 1, "A04", "NUL-3").replace(b"REL^", b"RE\\X00\\L^")
    assert eng.receive(adt, raw).ack_code == "AA"
    assert worker.run_once() == 1
    assert _family(engine, "NUL003") == "RE\\X00\\L"


def test_over_long_value_goes_to_the_error_queue_and_its_batch_applies(engine, setup, adt):
    """A family name longer than its column (250): the item goes to the error queue with reason
    value_refused and the column named, on both databases; the 7 other patients of the same
    worker batch (8: PostgreSQL's claim size) are applied in that one round; the batch is never
    failed again."""
    eng, worker, _ = setup
    long = adt_message("LONG01", 1, "A04", "LONG-1").replace(b"REL^", b"R" * 300 + b"^")
    for i in range(4):
        eng.receive(adt, adt_message(f"OK{i:04d}", 1, "A04", f"OK-{i}"))
    eng.receive(adt, long)
    for i in range(4, 7):
        eng.receive(adt, adt_message(f"OK{i:04d}", 1, "A04", f"OK-{i}"))
    assert worker.run_once() == 8
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(work_items))}
        attempts = (
            conn.execute(
                select(work_attempts.c.outcome).where(work_attempts.c.item_id == rows["mrn:LONG01"].id)
            )
            .scalars()
            .all()
        )
    bad = rows.pop("mrn:LONG01")
    assert (bad.status, bad.reason, bad.attempts) == ("error", "value_refused", 1)
    assert "patients.family" in bad.last_error and "300" in bad.last_error
    assert attempts == ["error"]
    assert {r.status for r in rows.values()} == {"done"} and len(rows) == 7
    assert worker.run_once() == 0  # nothing left to fail


def test_a_database_error_of_one_item_counts_as_its_attempt_only(engine, setup, adt, monkeypatch):
    """An item whose apply raises a database error every time (here: a statement that fails on
    both databases): retried alone under its savepoint, the failure is its own — one attempt
    with the retry policy per round, the error queue when spent — and every other item of its
    batch is applied in the first round."""
    eng, worker, clock = setup
    for i in range(4):
        eng.receive(adt, adt_message(f"DB{i:04d}", 1, "A04", f"DB-{i}"))
    real = worker.pipeline.apply

    def apply(conn, item, prep, now):
        real(conn, item, prep, now)
        if item.key == "mrn:DB0002":
            conn.execute(text("INSERT INTO messages (channel) VALUES (NULL)"))  # NOT NULL

    monkeypatch.setattr(worker.pipeline, "apply", apply)
    assert worker.run_once() == 4
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(work_items))}
    bad = rows.pop("mrn:DB0002")
    assert (bad.status, bad.reason, bad.attempts) == ("pending", "database_error", 1)
    assert {r.status for r in rows.values()} == {"done"}
    assert _family(engine, "DB0002") is None  # its effects rolled back with its savepoint
    policy = worker.pipeline.retry_policy("adt", bad.destination)
    for n in range(2, policy.max_attempts + 1):
        clock.advance(policy.max_delay * 2)
        assert worker.run_once() == 1
    with engine.connect() as conn:
        bad = conn.execute(select(work_items).where(work_items.c.key == "mrn:DB0002")).one()
    assert (bad.status, bad.attempts) == ("error", policy.max_attempts)


def test_lone_surrogate_and_nul_in_clerk_text_stored_the_same_on_both(engine):
    """A discard reason with a lone surrogate and a NUL (from JSON: "\\ud800", "\\u0000"): stored
    as U+FFFD and \\X00\\ on both databases instead of an encoding error on one of them."""
    with engine.begin() as conn:
        mid = conn.execute(
            messages.insert()
            .values(channel="adt", received_at=T0, raw=b"MSH|", body_sha256="0" * 64, status="accepted")
            .returning(messages.c.id)
        ).scalar_one()
        item = conn.execute(
            work_items.insert()
            .values(
                message_id=mid,
                channel="adt",
                destination="chart",
                key="mrn:S1",
                status="error",
                attempts=1,
                next_attempt_at=T0,
                created_at=T0,
                updated_at=T0,
            )
            .returning(work_items.c.id)
        ).scalar_one()
        errorqueue.discard_item(conn, item, user="clerk1", reason="bad \ud800 and \x00 end", now=T0)
    with engine.connect() as conn:
        reason = conn.execute(select(audit.c.reason).where(audit.c.action == "discard")).scalar()
    assert reason == "bad \ufffd and \\X00\\ end"


def test_over_long_value_refused_on_sqlite_as_on_postgresql(engine):
    """Writing a value longer than a sized column raises ValueRefused on both databases (SQLite
    would store it, PostgreSQL refuse it): one rule."""
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError) as info:
        with engine.begin() as conn:
            conn.execute(
                messages.insert().values(
                    channel="x" * 65, received_at=T0, raw=b"", body_sha256="0" * 64, status="accepted"
                )
            )
    assert isinstance(sanitize.refusal(info.value), sanitize.ValueRefused)
    assert "messages.channel" in str(info.value.orig)


def test_lookup_by_an_over_long_value_finds_nothing(engine):
    """Comparing a column with a value longer than it (an API lookup by a 300-character MRN or
    name prefix) finds nothing on both databases, rather than being refused; a NUL in it is
    cleaned like a stored value."""
    from interface.store import chart, chart_read

    with engine.connect() as conn:
        assert chart_read.get_chart(conn, "M" * 300) is None
        assert chart_read.get_chart(conn, "M\x00") is None
        assert (
            chart_read.search_patients(conn, family="F" * 300, given=None, birth_date=None, limit=5, offset=0)
            == []
        )


def test_message_key_from_a_long_msh3_and_msh10_fits_its_column(engine, setup, adt):
    """A message without a PID-3 MRN, with a 250-character MSH-3 and a 190-character MSH-10:
    its own ordering key (msg:channel:MSH-3:MSH-10) is longer than work_items.key (300), so it is
    kept to 300 characters with its SHA-256; the message is accepted (AA) on both databases,
    not refused with the whole commit group."""
    eng, worker, _ = setup
    app, ctl = "S" * 250, "C" * 190
    raw = adt_message("X", 1, "A04", ctl, sender=app).replace(b"PID|1||X^^^HOSP^MR|", b"PID|1|||")
    out = eng.receive(adt, raw)
    assert out.ack_code == "AA", out.text
    with engine.connect() as conn:
        key = conn.execute(select(work_items.c.key)).scalar()
    assert (
        len(key) == 300 and key.startswith("msg:adt:SSS") and key == sanitize.fit_key(f"msg:adt:{app}:{ctl}")
    )
