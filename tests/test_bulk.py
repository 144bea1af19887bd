"""Bulk clerk actions over exactly a list of ids or over a filter, each audited with who, when
and why; reprocessing a stored message to one chosen destination; the ``interface errors``
commands for both."""

from __future__ import annotations

import json

from sqlalchemy import select

from interface.desk import errorqueue
from interface.ops import cli
from interface.store import workqueue
from interface.store.schema import audit, work_items
from tests.test_destinations import FakeSender, Rig, adt, channel, mllp


def _rig_with_errors(engine):
    """Five lab items refused (AR): M1 x2, M2, M3 in channel adt; the store is fine."""
    rig = Rig(
        engine,
        channel([mllp("lab"), mllp("billing")]),
        FakeSender(lambda ctl: "AR" if ctl.startswith("X") else "AA"),
    )
    for cid, mrn in (("X1", "M1"), ("X2", "M2"), ("X3", "M3"), ("X4", "M4")):
        rig.send(adt(cid, mrn))
    rig.drain()
    return rig


def _ids(rig, destination, status="error"):
    return [i.id for i in rig.items(destination) if i.status == status]


def test_bulk_retry_exactly_the_listed_ids(engine):
    """Only the listed items are retried; each gets an audit row with user, time and reason."""
    rig = _rig_with_errors(engine)
    lab = _ids(rig, "lab")
    assert len(lab) == 4 and len(_ids(rig, "billing")) == 4
    res = errorqueue.bulk_action(
        engine, "retry", ids=[lab[0], lab[2], lab[0]], user="ana", reason="peer fixed", now=rig.clock()
    )
    assert res.succeeded == [lab[0], lab[2]] and res.failed == []
    status = {i.id: i.status for i in rig.items()}
    assert [status[i] for i in lab] == ["pending", "error", "pending", "error"]
    assert all(status[i] == "error" for i in _ids(rig, "billing"))
    with engine.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id)).all()
    assert [(r.user, r.action, r.target_id, r.reason, r.at is not None) for r in rows] == [
        ("ana", "retry", str(lab[0]), "peer fixed", True),
        ("ana", "retry", str(lab[2]), "peer fixed", True),
    ]
    assert "2 listed" in rows[0].detail


def test_bulk_reports_items_that_cannot_take_the_action(engine):
    """A done or unknown id is reported as failed; the others are still acted on."""
    rig = _rig_with_errors(engine)
    lab = _ids(rig, "lab")
    done = _ids(rig, "store", "done")[0]
    res = errorqueue.bulk_action(
        engine, "discard", ids=[lab[1], done, 99999], user="ana", reason="sent by phone", now=rig.clock()
    )
    assert res.succeeded == [lab[1]]
    assert [i for i, _ in res.failed] == [done, 99999]
    assert "done" in res.failed[0][1] and "no work item" in res.failed[1][1]


def test_bulk_by_filter_channel_reason_destination(engine):
    """--all with a filter: every error item of that destination, and nothing else."""
    rig = _rig_with_errors(engine)
    res = errorqueue.bulk_action(
        engine,
        "discard",
        where={"channel": "adt", "reason": "downstream_refused", "destination": "billing"},
        user="bo",
        reason="billing replaced",
        now=rig.clock(),
    )
    assert res.succeeded == _ids(rig, "billing", "discarded") and len(res.succeeded) == 4
    assert len(_ids(rig, "lab")) == 4
    res = errorqueue.bulk_action(
        engine, "retry", where={"channel": "other"}, user="bo", reason="x", now=rig.clock()
    )
    assert res.succeeded == [] and res.failed == []
    with engine.connect() as conn:
        details = set(conn.scalars(select(audit.c.detail)))
    assert details == {
        "bulk discard of 4 item(s) matching channel=adt, destination=billing, reason=downstream_refused"
    }


def test_bulk_needs_a_reason_and_one_selector(engine):
    """No reason, or both/neither of ids and filter: refused before anything changes."""
    rig = _rig_with_errors(engine)
    lab = _ids(rig, "lab")
    for kw in ({"ids": lab, "reason": " "}, {"ids": lab, "where": {}, "reason": "r"}, {"reason": "r"}):
        try:
            errorqueue.bulk_action(engine, "retry", user="u", now=rig.clock(), **kw)
        except errorqueue.ActionError:
            pass
        else:
            raise AssertionError(kw)
    assert len(_ids(rig, "lab")) == 4


def test_filter_is_capped_and_says_so(engine):
    """select_items returns at most the cap, oldest first, and whether more matched."""
    rig = _rig_with_errors(engine)
    with engine.connect() as conn:
        ids, more = errorqueue.select_items(conn, destination="lab", limit=3)
    assert ids == _ids(rig, "lab")[:3] and more


def test_reprocess_to_one_destination(engine):
    """A processed message is queued again to the chosen destination only, at the end of its
    key, audited; a second request while it is queued is refused."""
    rig = Rig(engine, channel([mllp("lab"), mllp("billing")]))
    rig.send(adt("C1", "M1", "A40", mrg="M2"))
    rig.drain()
    mid = rig.items()[0].message_id
    with engine.begin() as conn:
        item = errorqueue.reprocess_message(
            conn, mid, "lab", channels=[rig.ch], user="ana", now=rig.clock(), reason="lab lost it"
        )
    with engine.connect() as conn:
        keys = sorted(
            conn.scalars(select(workqueue.work_keys.c.key).where(workqueue.work_keys.c.item_id == item))
        )
        row = conn.execute(select(audit).where(audit.c.action == "reprocess")).one()
    assert keys == ["out:adt/lab|mrn:M1", "out:adt/lab|mrn:M2"]
    assert (row.user, row.target_type, row.target_id, row.reason) == (
        "ana",
        "message",
        str(mid),
        "lab lost it",
    )
    for dest, why in (
        ("lab", "already queued"),
        ("nope", "no destination"),
        ("application_ack", "no destination"),
    ):
        try:
            with engine.begin() as conn:
                errorqueue.reprocess_message(conn, mid, dest, channels=[rig.ch], user="a", now=rig.clock())
        except errorqueue.ActionError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(dest)
    rig.sender.sent.clear()
    rig.drain()
    assert rig.sender.sent == ["C1"]
    assert [i.status for i in rig.items("lab")] == ["done", "done"]


def _cli(db_url, *argv) -> int:
    return cli.main(["errors", *argv, "--db", db_url, "--user", "clerk1"])


def test_cli_bulk_and_reprocess(engine, db_url, capsys, tmp_path):
    """interface errors retry/discard with several ids, --all --filter, and reprocess."""
    rig = _rig_with_errors(engine)
    lab = _ids(rig, "lab")
    assert _cli(db_url, "retry", str(lab[0]), str(lab[1])) == 1  # no reason
    assert "reason is required" in capsys.readouterr().err
    assert _cli(db_url, "retry", str(lab[0]), str(lab[1]), "--reason", "peer back") == 0
    assert (
        _cli(
            db_url,
            "discard",
            "--all",
            "--filter",
            "destination=billing",
            "--filter",
            "reason=downstream_refused",
            "--reason",
            "not needed",
            "--json",
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert out["succeeded"] == _ids(rig, "billing", "discarded") and out["failed"] == []
    assert _cli(db_url, "discard", "--all", "--filter", "colour=red", "--reason", "x") == 2
    with engine.connect() as conn:
        st = dict(
            conn.execute(select(work_items.c.id, work_items.c.status).where(work_items.c.id.in_(lab))).all()
        )
    assert [st[i] for i in lab] == ["pending", "pending", "error", "error"]
    chdir = tmp_path / "channels"
    chdir.mkdir()
    (chdir / "adt.yaml").write_text(
        "name: adt\nlisten: tcp:0\nmapping: adt\nmrn: {authority: HOSP}\ndestinations:\n"
        "  - {name: lab, type: mllp, host: 127.0.0.1, port: 9}\n"
        "  - {name: billing, type: mllp, host: 127.0.0.1, port: 9}\n"
    )
    mid = rig.items("billing")[0].message_id
    assert _cli(db_url, "reprocess", str(mid), "--destination", "billing", "--channels", str(chdir)) == 0
    assert f"message {mid} queued to billing" in capsys.readouterr().out
    assert _cli(db_url, "reprocess", str(mid), "--destination", "nope", "--channels", str(chdir)) == 1
    with engine.connect() as conn:
        users = set(conn.scalars(select(audit.c.user)))
    assert users == {"clerk1"}


def test_cli_list_filters_by_destination(engine, db_url, capsys):
    """interface errors list --destination lab --json lists only that destination's items."""
    rig = _rig_with_errors(engine)
    assert _cli(db_url, "list", "--destination", "lab", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == _ids(rig, "lab") and {r["destination"] for r in rows} == {"lab"}
