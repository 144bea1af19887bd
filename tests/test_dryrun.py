"""``interface test --channel NAME MESSAGE...``: the ACK and the changes, as JSON, nothing written."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from interface.ops import cli
from interface.ops.dryrun import dry_run
from interface.store.chart_schema import chart_history, patients
from interface.store.document_schema import document_blobs, documents
from interface.store.schema import messages, work_items
from tests.test_adt_events import Harness

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ROOT / "channels"
MAPPINGS = ROOT / "mappings"
RULES = ROOT / "rules" / "completeness.yaml"
ADT = ROOT / "sample_messages" / "adt"
MDM = ROOT / "sample_messages" / "mdm"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

A08_FOR_100001 = (
    "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260309100000||ADT^A08^ADT_A01|DRY0001|P|2.5.1\r"
    "EVN|A08|20260309100000\r"
    "PID|1||100001^^^HOSP^MR||RIVERA^ANNA||19840312|F\r"
)


def run(files, *, db_url=None, channel="adt", channels_dir=CHANNELS) -> tuple[int, list, str]:
    out, err = io.StringIO(), io.StringIO()
    code = dry_run(
        channel,
        [str(f) for f in files],
        channels_dir=channels_dir,
        mappings_dir=MAPPINGS,
        rules_file=RULES,
        db_url=db_url,
        clock=lambda: NOW,
        out=out,
        err=err,
    )
    return code, (json.loads(out.getvalue()) if out.getvalue() else []), err.getvalue()


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (messages, work_items, patients, chart_history, documents, document_blobs)
        }


def test_shows_ack_and_chart_changes_in_order(tmp_path):
    """Two messages for one patient: the ACK of each (MSA-2 = its control id) and what each
    would change; the second sees the first's effect (an update of the registered patient)."""
    code, results, _ = run([ADT / "04-a04-register-rivera.hl7", ADT / "12-a08-update-rivera.hl7"])
    assert code == 0
    first, second = results
    assert first["message_type"] == "ADT^A04" and first["status"] == "accepted"
    assert f"MSA|{first['ack_code']}|SMP0004" in first["ack"]
    store = first["destinations"][0]
    assert store["outcome"] == "applied" and store["mapping"] == "adt"
    assert store["records"][0]["mrn"] == "100001"
    actions = {(c["table"], c["action"]) for c in store["changes"]}
    assert ("patients", "create") in actions and ("visits", "create") in actions
    upd = second["destinations"][0]
    assert upd["outcome"] == "applied"
    assert any(c["table"] == "patients" and c["action"] == "set" for c in upd["changes"])
    assert not any(c["action"] == "create" and c["table"] == "patients" for c in upd["changes"])


def test_writes_nothing_to_a_real_database(engine, db_url, tmp_path):
    """Against a real database the current chart is used and every change is rolled back."""
    code, results, _ = run([ADT / "04-a04-register-rivera.hl7"], db_url=db_url)
    assert code == 0 and results[0]["destinations"][0]["outcome"] == "applied"
    assert counts(engine) == dict.fromkeys(counts(engine), 0)
    h = Harness(engine)  # now the patient really exists
    h.send((ADT / "04-a04-register-rivera.hl7").read_bytes())
    h.drain()
    before = counts(engine)
    code, results, _ = run([_write(tmp_path, A08_FOR_100001)], db_url=db_url)
    assert code == 0
    changes = results[0]["destinations"][0]["changes"]
    given = [c for c in changes if c["field"] == "given"]
    assert given == [dict(given[0], old="ANA", new="ANNA")]
    assert counts(engine) == before
    assert h.chart("100001")["name"]["given"] == "ANA"


def _write(directory: Path, text: str, name: str = "msg.hl7") -> Path:
    p = directory / name
    p.write_bytes(text.encode())
    return p


def test_document_for_unknown_patient_is_shown_held(engine, db_url):
    """An MDM for a patient the chart does not know: held (unknown patient); nothing remains."""
    code, results, _ = run([MDM / "mdm_t02_original_pdf.hl7"], channel="mdm", db_url=db_url)
    assert code == 1
    dest = results[0]["destinations"][0]
    assert (dest["outcome"], dest["reason"], dest["error"]) == ("held", "unknown_patient", "unknown patient")
    assert counts(engine) == dict.fromkeys(counts(engine), 0)


def test_document_applied_when_patient_known(engine, db_url, tmp_path, monkeypatch):
    """With the patient in the chart the T02 shows the index entry it would create, and nothing
    is kept: no index entry, no blob row, no content file (not even under ./var)."""
    monkeypatch.chdir(tmp_path / "cwd" if (tmp_path / "cwd").mkdir() is None else tmp_path)
    h = Harness(engine)
    h.send(A08_FOR_100001.replace("RIVERA^ANNA", "RIVERA^ANA^MARIA").encode())
    h.drain()
    before = counts(engine)
    code, results, _ = run([MDM / "mdm_t02_original_pdf.hl7"], channel="mdm", db_url=db_url)
    assert code == 0
    dest = results[0]["destinations"][0]
    assert dest["outcome"] == "applied"
    assert dest["changes"] == [
        {"document_number": "DOC-1002", "event": "T02", "action": "created", "version": 1, "mrn": "100001"}
    ]
    assert counts(engine) == before
    assert list((tmp_path / "cwd").rglob("*")) == []


def test_mapping_error_is_shown_with_reason_and_location(tmp_path):
    """A message without an MRN: accepted on commit (AA), and the error the clerk would see."""
    msg = _write(
        tmp_path,
        "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260309100000||ADT^A01|DRY0002|P|2.5.1\r"
        "EVN|A01|20260309100000\rPID|1||||DOE^JANE\rPV1|1|I\r",
    )
    code, results, _ = run([msg])
    assert code == 1
    r = results[0]
    assert r["ack_code"] == "AA"
    dest = r["destinations"][0]
    assert dest["outcome"] == "error"
    assert dest["reason"] == "missing_field"
    assert dest["location"].startswith("PID")


def test_on_process_channel_acks_the_mapping_error(tmp_path):
    """A channel that ACKs after processing answers AE with an ERR naming the field."""
    chdir = tmp_path / "channels"
    chdir.mkdir()
    text = (CHANNELS / "adt.yaml").read_text().replace("when: on_commit", "when: on_process")
    (chdir / "adt.yaml").write_text(text)
    msg = _write(
        tmp_path,
        "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260309100000||ADT^A01|DRY0003|P|2.5.1\r"
        "EVN|A01|20260309100000\rPID|1||||DOE^JANE\rPV1|1|I\r",
    )
    code, results, _ = run([msg], channels_dir=chdir)
    assert code == 1
    assert results[0]["ack_code"] == "AE"
    assert "ERR|" in results[0]["ack"]
    assert results[0]["status"] == "error"


def test_rejected_message_shows_the_ar(tmp_path):
    """A message type the channel does not accept: AR with ERR-3 200, no destination runs."""
    msg = _write(
        tmp_path,
        "MSH|^~\\&|LAB|HOSP|INTERFACE|HOSP|20260309100000||ORU^R01|DRY0004|P|2.5.1\r"
        "PID|1||100001^^^HOSP^MR\r",
    )
    code, results, _ = run([msg])
    assert code == 1
    assert results[0]["status"] == "rejected" and results[0]["ack_code"] == "AR"
    assert "does not accept" in results[0]["error"]
    assert results[0]["destinations"] == []


def test_unknown_channel_and_unreadable_file(tmp_path):
    code, results, err = run([ADT / "04-a04-register-rivera.hl7"], channel="nope")
    assert code == 2 and "no channel named 'nope'" in err and "adt" in err
    code, results, err = run([tmp_path / "missing.hl7"])
    assert code == 2 and "cannot read" in err


def test_cli_prints_json(capsys, monkeypatch):
    """``interface test --channel adt FILE`` is wired to the dry run."""
    monkeypatch.chdir(ROOT)
    code = cli.main(["test", "--channel", "adt", str(ADT / "01-a28-add-person-chen.hl7")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out[0]["message_type"] == "ADT^A28"
    assert out[0]["destinations"][0]["outcome"] == "applied"


def test_several_channels_route_by_message_type():
    """``--channel adt,mdm``: the A04 creates the patient, so the T02 after it is applied (in a
    throwaway database, where alone it would be held for an unknown patient)."""
    code, results, _ = run(
        [ADT / "04-a04-register-rivera.hl7", MDM / "mdm_t02_original_pdf.hl7"], channel="adt,mdm"
    )
    assert code == 0
    assert [r["channel"] for r in results] == ["adt", "mdm"]
    assert results[1]["destinations"][0]["outcome"] == "applied"
    assert results[1]["destinations"][0]["changes"][0]["action"] == "created"


def test_cli_db_option_uses_the_real_charts(engine, db_url, capsys, monkeypatch):
    """``interface test --channel adt --db URL FILE``: against the current charts, rolled back."""
    h = Harness(engine)
    h.send((ADT / "04-a04-register-rivera.hl7").read_bytes())
    h.drain()
    before = counts(engine)
    monkeypatch.chdir(ROOT)
    code = cli.main(["test", "--channel", "adt", "--db", db_url, str(ADT / "12-a08-update-rivera.hl7")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    changes = out[0]["destinations"][0]["changes"]
    assert not any(c["table"] == "patients" and c["action"] == "create" for c in changes)
    assert counts(engine) == before


def test_the_identity_check_runs_as_interface_run_would(engine, db_url):
    """Chart 100001 is another person (DOE, JANE): the dry run shows the document stopped by the
    identity check, as the worker would stop it, and nothing is kept."""
    h = Harness(engine)
    h.send(A08_FOR_100001.replace("RIVERA^ANNA", "DOE^JANE").encode())
    h.drain()
    before = counts(engine)
    code, results, _ = run([MDM / "mdm_t02_original_pdf.hl7"], channel="mdm", db_url=db_url)
    dest = results[0]["destinations"][0]
    assert code == 1 and (dest["outcome"], dest["reason"]) == ("error", "identity_mismatch")
    assert counts(engine) == before
