"""One masking rule for every interface (interface.desk.masking): per role and per route — the API,
the console and the CLI — masked by default, revealed with a reason, and the reveal audited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interface.desk import masking
from interface.mapping.records import Identifier, Insurance, Name, Patient

from .test_chart import adt as chart_update
from .test_chart import apply
from .test_web_api import (  # noqa: F401
    PASSWORD,
    app,
    audit_rows,
    channels,
    client,
    clock,
    fail,
    fast_hashing,
    h,
    receive,
    tokens,
)

PID_NAME = "DOE^JANE^Q"
SSN, POLICY_NO = "123-45-6789", "POL99887766"


@pytest.fixture
def message_id(engine, channels, clock):  # noqa: F811
    """One ADT message for MRN 10000001 (PID-5 DOE^JANE^Q, an OBX-5 note) in the journal."""
    from interface.engine.inbound import Engine

    ch = next(c for c in channels if c.name == "adt")
    raw = (
        b"MSH|^~\\&|REG|HOSP|INTERFACE|HOSP|20261122110000||ADT^A08^ADT_A01|M1|P|2.5.1\r"
        b"EVN|A08|20261122110000\rPID|1||10000001^^^HOSP^MR||DOE^JANE^Q||19800131|F\r"
        b"PV1|1|I|W1^101^A\rOBX|1|TX|NOTE||Patient says the pain is worse\r"
    )
    return Engine(engine, clock=clock).receive(ch, raw).message_id


@pytest.fixture
def patient(engine):
    """A chart for MRN 10000001 with a national id, a second identifier and an insurance policy."""
    apply(
        engine,
        chart_update(
            "A04",
            "10000001",
            insurance=[Insurance(plan="P1", member_id=POLICY_NO)],
            patient=Patient(
                identifiers=[Identifier("10000001", "HOSP", "MR"), Identifier("987654321", "NHS", "NH")],
                name=Name(family="Doe", given="Jane"),
                ssn=SSN,
            ),
        ),
    )
    return "10000001"


@pytest.mark.parametrize("role", ["analyst", "clerk", "admin"])
def test_api_message_detail_masked_by_default_for_every_role(client, tokens, message_id, role):  # noqa: F811
    """GET /api/messages/{id} as analyst, clerk or admin, no reveal: PID-3/PID-5/PID-7 and the
    OBX-5 text are ••• in the raw text and the segments, the MRN ****; the view is audited."""
    r = client.get(f"/api/messages/{message_id}", headers=h(tokens[role]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert "DOE" not in r.text and "pain" not in r.text and "19800131" not in r.text
    assert "\nPID|1||•••||•••||•••|F" in d["raw"] and "OBX|1|TX|NOTE||•••" in d["raw"]
    pid = next(s for s in d["segments"] if s["name"] == "PID")
    f5 = next(f for f in pid["fields"] if f["position"] == 5)
    assert f5["value"] == masking.MASK and f5["masked"] is True and f5["repetitions"] == []
    assert d["summary"]["patient_id"] == "****0001" and d["revealed"] is False


@pytest.mark.parametrize("role", ["analyst", "clerk", "admin"])
def test_api_message_detail_revealed_with_a_reason_and_audited(client, engine, tokens, message_id, role):  # noqa: F811
    """?reveal=true&reason=...: the raw text and segments in full, and one audit row (reveal,
    the user, the message, the reason); without a reason: 400 and nothing revealed."""
    assert client.get(f"/api/messages/{message_id}?reveal=true", headers=h(tokens[role])).status_code == 400
    r = client.get(
        f"/api/messages/{message_id}?reveal=true&reason=fixing%20ticket%207", headers=h(tokens[role])
    )
    assert r.status_code == 200
    d = r.json()
    assert PID_NAME in d["raw"] and "pain is worse" in d["raw"] and d["revealed"] is True
    assert d["summary"]["patient_id"] == "10000001"
    (row,) = audit_rows(engine, action="reveal")
    assert (row["user"], row["target_type"], row["target_id"], row["reason"]) == (
        f"{role}1",
        "message",
        str(message_id),
        "fixing ticket 7",
    )


def test_api_message_detail_refused_to_an_auditor(client, tokens, message_id):  # noqa: F811
    """An auditor reads the audit trail, not messages: 403 with or without a reveal."""
    assert client.get(f"/api/messages/{message_id}", headers=h(tokens["auditor"])).status_code == 403
    assert (
        client.get(
            f"/api/messages/{message_id}?reveal=true&reason=x", headers=h(tokens["auditor"])
        ).status_code
        == 403
    )


@pytest.mark.parametrize("role", ["clerk", "admin"])
def test_api_patient_masks_national_and_insurance_ids_until_revealed(client, engine, tokens, patient, role):  # noqa: F811
    """GET /api/patients/{mrn}: ssn, identifiers other than the MRN and insurance member ids
    masked; ?reveal=true&reason=... shows them and audits the reveal; no reason: 400."""
    r = client.get(f"/api/patients/{patient}", headers=h(tokens[role]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert SSN not in r.text and POLICY_NO not in r.text and "987654321" not in r.text
    assert body["ssn"] == "****6789" and body["insurance"][0]["member_id"] == "****7766"
    values = {i["value"] for i in body["identifiers"]}
    assert values == {"10000001", "****4321"}
    assert client.get(f"/api/patients/{patient}?reveal=true", headers=h(tokens[role])).status_code == 400
    assert not audit_rows(engine, action="reveal")
    r = client.get(f"/api/patients/{patient}?reveal=true&reason=RoI%20request%2012", headers=h(tokens[role]))
    body = r.json()
    assert body["ssn"] == SSN and body["insurance"][0]["member_id"] == POLICY_NO
    assert "987654321" in {i["value"] for i in body["identifiers"]}
    (row,) = audit_rows(engine, action="reveal")
    assert (row["user"], row["target_type"], row["target_id"], row["reason"]) == (
        f"{role}1",
        "patient",
        patient,
        "RoI request 12",
    )


def test_api_patient_refused_to_an_analyst(client, tokens, patient):  # noqa: F811
    """Charts are the clerk's: an analyst gets 403, revealing or not."""
    assert client.get(f"/api/patients/{patient}", headers=h(tokens["analyst"])).status_code == 403


def test_every_role_has_a_rule_and_reveals_follow_it():
    """Each role of users.ROLES has an entry; a role outside it may not reveal (403), no reason
    is 400 before anything else, and no reveal asked means masked."""
    from interface.desk.users import ROLES

    assert set(masking.REVEAL) == set(ROLES)
    assert masking.check_reveal("clerk", masking.CHART, False, "why") is None
    assert masking.check_reveal("clerk", masking.CHART, True, "  why  ") == "why"
    with pytest.raises(masking.RevealRefused) as e400:
        masking.check_reveal("clerk", masking.CHART, True, " ")
    with pytest.raises(masking.RevealRefused) as e403:
        masking.check_reveal("analyst", masking.CHART, True, "why")
    with pytest.raises(masking.RevealRefused):
        masking.check_reveal("auditor", masking.MESSAGE, True, "why")
    assert (e400.value.status, e403.value.status) == (400, 403)


def test_console_and_api_mask_the_same_fields(client, engine, tokens, message_id):  # noqa: F811
    """The console's raw view and the API's raw text of one message are the same masked text
    (one function, masking.message_text)."""
    from sqlalchemy import select

    from interface.hl7.message import decode
    from interface.store.schema import messages

    with engine.connect() as conn:
        raw = conn.execute(select(messages.c.raw).where(messages.c.id == message_id)).scalar()
    api = client.get(f"/api/messages/{message_id}", headers=h(tokens["clerk"])).json()["raw"]
    assert api == masking.message_text(decode(raw).text, False)
    from interface.web import pages

    assert pages.masked_text is masking.message_text and pages.MASKED_FIELDS is masking.MESSAGE_FIELDS


def test_cli_errors_show_masked_until_revealed_with_reason(engine, db_url, message_id, tmp_path):
    """`interface errors show ID` prints the message masked and the MRN ****; --reveal without
    --reason is refused (exit 2); --reveal --reason prints it whole and audits the reveal as
    --user."""
    fail(engine, message_id)
    from .test_web_api import item_of

    item = item_of(engine, message_id).id
    cli = [
        str(Path(sys.executable).parent / "interface"),
        "errors",
        "show",
        str(item),
        "--db",
        db_url,
        "--json",
    ]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert "DOE" not in out.stdout and "pain" not in out.stdout and "•••" in shown["raw"]
    assert shown["key"] == "mrn:****0001" and shown["message"]["patient_id"] == "****0001"
    refused = subprocess.run(cli + ["--reveal"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and not audit_rows(engine, action="reveal")
    ok = subprocess.run(
        cli + ["--reveal", "--reason", "ticket 9", "--user", "ops1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and PID_NAME in json.loads(ok.stdout)["raw"]
    (row,) = audit_rows(engine, action="reveal")
    assert (row["user"], row["target_id"], row["reason"]) == ("ops1", str(message_id), "ticket 9")
