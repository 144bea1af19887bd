"""The audit trail's one writer (interface.store.audit): the hash chain, its check (tampering is
found and named), the report by patient with merges resolved, CSV, and concurrent appends."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

from sqlalchemy import delete, insert, select, text, update

from interface.mapping.records import Merge, Name, Patient
from interface.ops import cli
from interface.store import audit as store_audit
from interface.store.audit_schema import audit_chain
from interface.store.schema import audit
from tests.test_chart import adt, apply, vis


def _write(engine, now, n=5, **kw):
    with engine.begin() as conn:
        for i in range(n):
            store_audit.record(
                conn,
                user=kw.get("user", "clerk1"),
                action="view",
                target_type="patient",
                target_id=f"M{i}",
                patient=kw.get("patient", f"M{i}"),
                detail={"i": i, "text": "é\x00"},
                now=now + timedelta(seconds=i),
                via="console",
            )


def _verify(engine):
    with engine.connect() as conn:
        return store_audit.verify(conn)


def test_chain_verifies_and_names_a_changed_entry(engine, now):
    """Entries chain by hash; changing one column of one row with SQL breaks the chain at that row."""
    _write(engine, now)
    v = _verify(engine)
    assert v.ok and v.checked == 5 and v.seq == 5
    with engine.connect() as conn:
        third = conn.execute(select(audit.c.id).where(audit.c.seq == 3)).scalar_one()
    with engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.id == third).values(user="someone_else"))
    v = _verify(engine)
    assert not v.ok and v.broken_id == third and v.broken_seq == 3 and "does not match" in v.problem


def test_removed_inserted_and_cut_entries_are_found(engine, now):
    """A row deleted from the middle, a row inserted around the writer, and a tail cut off (with
    the rows' hashes left consistent) each fail the check."""
    _write(engine, now)
    with engine.begin() as conn:
        conn.execute(delete(audit).where(audit.c.seq == 2))
    v = _verify(engine)
    assert not v.ok and v.broken_seq == 3 and "missing" in v.problem

    with engine.begin() as conn:
        conn.execute(delete(audit))
        conn.execute(update(audit_chain).values(seq=0, last_hash=store_audit.GENESIS))
    _write(engine, now, n=3)
    with engine.begin() as conn:
        conn.execute(insert(audit).values(at=now, user="x", action="view"))
    v = _verify(engine)
    assert not v.ok and "outside the chain" in v.problem

    with engine.begin() as conn:
        conn.execute(delete(audit).where(audit.c.seq.is_(None)))
        conn.execute(delete(audit).where(audit.c.seq == 3))
    v = _verify(engine)
    assert not v.ok and "removed" in v.problem


def test_cli_verify_exit_codes(engine, db_url, now, capsys):
    """`interface audit verify` exits 0 on a sound chain and 1 naming the first broken entry."""
    _write(engine, now, n=3)
    assert cli.main(["audit", "verify", "--db", db_url]) == 0
    assert "3 entries" in capsys.readouterr().out
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit SET reason = 'edited' WHERE seq = 2"))
    assert cli.main(["audit", "verify", "--db", db_url]) == 1
    out = capsys.readouterr()
    assert "entry 2" in out.out + out.err


def test_rows_before_the_chain_are_counted_not_checked(engine, now):
    """Rows that predate the chain (no hash, ids below its start) are counted as before it."""
    with engine.begin() as conn:
        conn.execute(insert(audit).values(at=now, user="old", action="login"))
        conn.execute(delete(audit_chain))
    _write(engine, now, n=2)
    v = _verify(engine)
    assert v.ok and v.before_chain == 1 and v.checked == 2


def test_report_resolves_merges(engine, now):
    """A report for the surviving MRN includes entries written under an MRN merged into it, and
    the merged MRN's report reaches the survivor's entries too."""
    apply(engine, adt("A04", "S1", vis("V1"), patient=Patient(name=Name(family="Doe"))))
    apply(engine, adt("A04", "P9", vis("V9"), patient=Patient(name=Name(family="Doe"))))
    _write(engine, now, n=1, patient="P9", user="early")
    apply(engine, adt("A40", "S1", merge=Merge(prior_mrn="P9")))
    _write(engine, now + timedelta(hours=1), n=1, patient="S1", user="late")
    _write(engine, now, n=1, patient="OTHER", user="nobody")
    with engine.connect() as conn:
        assert set(store_audit.patient_mrns(conn, "S1")) == {"S1", "P9"}
        rows = store_audit.report(conn, mrns=store_audit.patient_mrns(conn, "S1"))
        assert [r["user"] for r in rows] == ["late", "early"]
        assert {r["user"] for r in store_audit.report(conn, mrns=store_audit.patient_mrns(conn, "P9"))} == {
            "late",
            "early",
        }
        by_user = store_audit.report(conn, user="late", since=now, until=now + timedelta(hours=2))
        assert [r["patient"] for r in by_user] == ["S1"]
        assert store_audit.report(conn, user="late", until=now) == []


def test_csv_export_quotes_and_defuses_formulas(engine, now):
    """CSV: a header, one line per entry, ISO times; a cell starting '=' cannot run in a sheet."""
    with engine.begin() as conn:
        store_audit.record(
            conn, user="u", action="view", reason="=HYPERLINK(1)", patient="M1", now=now, via="api"
        )
        rows = store_audit.report(conn, mrns=["M1"])
    parsed = list(csv.DictReader(io.StringIO(store_audit.to_csv(rows))))
    assert parsed[0]["reason"] == "'=HYPERLINK(1)" and parsed[0]["via"] == "api"
    assert parsed[0]["at"].startswith("2026-11-22T12:00:00") and parsed[0]["patient"] == "M1"


def test_concurrent_appends_from_two_connections_keep_the_chain(engine, now):
    """Two connections append at once (started together at a barrier), many times: every entry
    is chained exactly once and the chain verifies."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for i in range(25):
                with engine.begin() as conn:
                    store_audit.record(conn, user=name, action="view", patient=f"M{i}", now=now)
                    store_audit.record_many(
                        conn, [{"user": name, "action": "search", "patient": "X"}] * 2, now=now
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    v = _verify(engine)
    assert v.ok and v.checked == 150
    with engine.connect() as conn:
        seqs = conn.execute(select(audit.c.seq).order_by(audit.c.seq)).scalars().all()
    assert seqs == list(range(1, 151))


def _rechain(engine, from_seq: int) -> None:
    """A careful forger: after changing entries, recompute every hash from ``from_seq`` on and the
    head, so that the chain alone verifies again."""
    with engine.begin() as conn:
        prev = (
            conn.execute(select(audit.c.entry_hash).where(audit.c.seq == from_seq - 1)).scalar()
            or store_audit.GENESIS
        )
        rows = conn.execute(select(audit).where(audit.c.seq >= from_seq).order_by(audit.c.seq)).all()
        seq = from_seq - 1
        for r in rows:
            seq = r.seq
            prev = store_audit.entry_hash(prev, r.seq, r.at, r._mapping)
            conn.execute(update(audit).where(audit.c.id == r.id).values(entry_hash=prev))
        conn.execute(update(audit_chain).where(audit_chain.c.id == 1).values(seq=seq, last_hash=prev))


def test_anchors_outside_the_database_catch_a_rewritten_or_cut_chain(engine, db_url, now, tmp_path, capsys):
    """``interface audit anchor --file`` appends the head (seq, hash, time); ``verify --anchor``
    checks the chain against every anchor: a chain rewritten consistently (which ``verify`` alone
    accepts) and a chain cut back to before an anchor both fail, naming the entry."""
    anchors = tmp_path / "anchors.jsonl"
    _write(engine, now, n=3)
    assert cli.main(["audit", "anchor", "--db", db_url, "--file", str(anchors)]) == 0
    first = capsys.readouterr().out
    assert '"seq": 3' in first
    _write(engine, now + timedelta(minutes=1), n=3)
    assert cli.main(["audit", "anchor", "--db", db_url, "--file", str(anchors)]) == 0
    capsys.readouterr()
    assert len(anchors.read_text().splitlines()) == 2  # appended, never rewritten
    assert cli.main(["audit", "anchor", "--db", db_url]) == 0  # printed for the auditor to keep
    assert '"seq": 6' in capsys.readouterr().out and len(anchors.read_text().splitlines()) == 2
    assert cli.main(["audit", "verify", "--db", db_url, "--anchor", str(anchors)]) == 0
    assert "2 anchor(s) hold" in capsys.readouterr().out
    # entry 2 rewritten and the chain recomputed: verify alone passes, the anchors do not
    with engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == 2).values(user="forger"))
    _rechain(engine, 2)
    assert cli.main(["audit", "verify", "--db", db_url]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--db", db_url, "--anchor", str(anchors)]) == 1
    err = capsys.readouterr().err
    assert "entry 3 (audit id" in err and "rewritten" in err and "entry 6" in err
    # the tail cut back to 4 entries, the head made to agree: the later anchor names entry 6
    with engine.begin() as conn:
        conn.execute(delete(audit).where(audit.c.seq > 4))
    _rechain(engine, 1)
    assert cli.main(["audit", "verify", "--db", db_url]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--db", db_url, "--anchor", str(anchors)]) == 1
    err = capsys.readouterr().err
    assert "entry 6 (anchored" in err and "cut back" in err and "ends at entry 4" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert cli.main(["audit", "verify", "--db", db_url, "--anchor", str(bad)]) == 2
    assert f"{bad}:1: not an anchor" in capsys.readouterr().err
