"""Retention: `interface db prune` deletes old finished messages (with their work items and
history) in batches and never a queued, held, errored or quarantined one; SQLite gives the space
back to the file system."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select, text

from interface.ops import cli
from interface.store import retention
from interface.store.db import make_engine
from interface.store.schema import audit, events, messages, work_attempts, work_items, work_keys

DAY = timedelta(days=1)


def _msg(
    conn, now, *, status, age_days, item=None, channel="adt", parent_id=None, key="mrn:1", size=100
) -> int:
    at = now - DAY * age_days
    mid = conn.execute(
        insert(messages)
        .values(
            channel=channel,
            received_at=at,
            status=status,
            raw=b"M" * size,
            body_sha256="0" * 64,
            parent_id=parent_id,
        )
        .returning(messages.c.id)
    ).scalar_one()
    if item is not None:
        iid = conn.execute(
            insert(work_items)
            .values(
                message_id=mid,
                channel=channel,
                destination="chart",
                key=key,
                status=item,
                attempts=1,
                next_attempt_at=at,
                created_at=at,
                updated_at=at,
            )
            .returning(work_items.c.id)
        ).scalar_one()
        conn.execute(insert(work_attempts).values(item_id=iid, at=at, outcome=item))
        if item in ("pending", "error"):
            conn.execute(insert(work_keys).values(item_id=iid, key=key))
    return mid


def _fixture(engine, now) -> dict:
    with engine.begin() as conn:
        ids = dict(
            old_done=_msg(conn, now, status="processed", age_days=40, item="done"),
            old_done2=_msg(conn, now, status="processed", age_days=35, item="done"),
            old_discarded=_msg(conn, now, status="discarded", age_days=40, item="discarded"),
            old_rejected=_msg(conn, now, status="rejected", age_days=40),
            old_pending=_msg(conn, now, status="accepted", age_days=40, item="pending", key="mrn:2"),
            old_held=_msg(conn, now, status="accepted", age_days=40, item="held", key="mrn:3"),
            old_error=_msg(conn, now, status="error", age_days=40, item="error", key="mrn:4"),
            old_quarantined=_msg(conn, now, status="quarantined", age_days=40, item="error", key="q"),
            new_done=_msg(conn, now, status="processed", age_days=5, item="done"),
            old_mdm=_msg(conn, now, status="processed", age_days=40, item="done", channel="mdm"),
        )
        ids["original_kept"] = _msg(conn, now, status="resubmitted", age_days=40)
        ids["copy_new"] = _msg(
            conn, now, status="processed", age_days=5, item="done", parent_id=ids["original_kept"]
        )
        ids["original_gone"] = _msg(conn, now, status="resubmitted", age_days=40)
        ids["copy_old"] = _msg(
            conn, now, status="processed", age_days=39, item="done", parent_id=ids["original_gone"]
        )
        conn.execute(
            insert(events),
            [
                dict(at=now - 40 * DAY, kind="oversized", channel="adt"),
                dict(at=now - DAY, kind="refused", channel="adt"),
            ],
        )
        conn.execute(insert(audit).values(at=now - 400 * DAY, user="clerk", action="discard"))
    return ids


def _left(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(messages.c.id)).scalars())


def test_prune_deletes_only_old_finished_messages(engine, now):
    """Old processed/discarded/rejected messages go with their items and attempts, in batches;
    pending, held, errored, quarantined and recent ones stay; the audit trail stays."""
    ids = _fixture(engine, now)
    assert retention.count(engine, older_than=30 * DAY, now=now, channels=["adt"]) == 5
    assert retention.count(engine, older_than=30 * DAY, now=now) == 6
    r = retention.prune(engine, older_than=30 * DAY, now=now, batch=2)
    gone = {"old_done", "old_done2", "old_discarded", "old_rejected", "old_mdm", "copy_old", "original_gone"}
    assert _left(engine) == {v for k, v in ids.items() if k not in gone}
    assert (r.messages, r.work_items, r.events) == (7, 5, 1)
    assert r.batches >= 4  # 7 messages, 2 per transaction
    with engine.connect() as conn:
        items = set(conn.execute(select(work_items.c.message_id)).scalars())
        assert items == {
            ids[k]
            for k in ("old_pending", "old_held", "old_error", "old_quarantined", "new_done", "copy_new")
        }
        orphans = conn.execute(
            select(func.count())
            .select_from(work_attempts)
            .where(work_attempts.c.item_id.notin_(select(work_items.c.id)))
        ).scalar()
        assert orphans == 0
        assert conn.execute(select(func.count()).select_from(work_keys)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(audit)).scalar() == 1
        assert [e for e in conn.execute(select(events.c.kind)).scalars()] == ["refused"]
    again = retention.prune(engine, older_than=30 * DAY, now=now)
    assert again.messages == 0


def test_prune_per_channel(engine, now):
    """--channel limits pruning to that channel's messages and events."""
    ids = _fixture(engine, now)
    r = retention.prune(engine, older_than=30 * DAY, now=now, channels=["mdm"])
    assert r.messages == 1 and ids["old_mdm"] not in _left(engine) and ids["old_done"] in _left(engine)


def test_cli_prune_and_dry_run(engine, db_url, now, capsys):
    """`interface db prune --dry-run` counts; without it, deletes and reports."""
    with engine.begin() as conn:
        old = _msg(conn, now, status="processed", age_days=400, item="done")
        kept = _msg(conn, now, status="accepted", age_days=400, item="pending")
    assert cli.main(["db", "prune", "--older-than", "30", "--dry-run", "--db", db_url]) == 0
    assert "would delete 1 message" in capsys.readouterr().out
    assert _left(engine) == {old, kept}
    assert cli.main(["db", "prune", "--older-than", "30", "--batch", "10", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 message(s), 1 work item(s)" in out
    assert _left(engine) == {kept}
    assert cli.main(["db", "prune", "--older-than", "-1", "--db", db_url]) == 2


def test_space_is_reclaimed(engine, now):
    """SQLite: freed pages go back to the file system (incremental vacuum); PostgreSQL: the
    rows are gone and VACUUM (ANALYZE) runs without error when asked."""
    with engine.begin() as conn:
        for _ in range(40):
            _msg(conn, now, status="processed", age_days=40, item="done", size=64 * 1024)
    retention.prune(engine, older_than=30 * DAY, now=now)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental, set at creation
            before = conn.exec_driver_sql("PRAGMA freelist_count").scalar()
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.rollback()
        assert before > 500  # 40 x 64 KiB of raw bytes freed
        assert "returned" in retention.reclaim(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
            assert conn.exec_driver_sql("PRAGMA page_count").scalar() <= pages - before
            conn.rollback()
    else:
        assert "autovacuum" in retention.reclaim(engine)
        assert "VACUUM" in retention.reclaim(engine, full=True)
    assert _left(engine) == set()


def test_old_sqlite_file_switches_to_incremental_with_vacuum(tmp_path, now):
    """A SQLite file made without incremental vacuum is told to run --vacuum once, which switches it."""
    import sqlite3

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    eng = make_engine(f"sqlite:///{path}")
    try:
        assert "--vacuum" in retention.reclaim(eng)
        assert "enabled" in retention.reclaim(eng, full=True)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
            conn.rollback()
    finally:
        eng.dispose()
