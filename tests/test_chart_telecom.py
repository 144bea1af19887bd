"""v2.7 and later: PID-40 (patient telecommunication information) read into phones and e-mail by
XTN-2 use code (table 0201) and XTN-3 equipment type (table 0202); the truncation character of
MSH-2 (v2.7 2.5.5.2) is never stored as data, and the message is flagged "truncated" (journal
warning, W in the ACK, ``warnings`` in the message API). Raw bytes in -> ACK and chart out."""

from __future__ import annotations

from sqlalchemy import select

from interface.store.schema import messages
from tests.test_adt_events import Harness
from tests.test_web_api import app, channels, client, clock, fast_hashing, h, tokens  # noqa: F401

_n = iter(range(1, 1_000_000))


def v27(pid: str, *, enc: str = "^~\\&#", version: str = "2.7", event: str = "A28") -> str:
    time = "20260301100000"
    return (
        "\r".join(
            [
                f"MSH|{enc}|REG|HOSP|IF|HOSP|{time}||ADT^{event}^ADT_A05|T{next(_n)}|P|{version}",
                f"EVN||{time}",
                pid,
            ]
        )
        + "\r"
    )


def pid40(telecom: str, *, name: str = "DOE^JANE", address: str = "") -> str:
    f = [""] * 41
    f[0], f[1], f[3], f[5], f[11], f[40] = "PID", "1", "M100^^^HOSP^MR", name, address, telecom
    return "|".join(f).rstrip("|")


def test_pid40_phones_and_email_by_use_and_equipment_code(engine):
    """PID-40 repetitions become phones with their XTN-2 use and XTN-3 equipment: a number from
    XTN-12 (unformatted) or country/area/local (XTN-5..7), an e-mail (NET, Internet) from XTN-4."""
    hh = Harness(engine)
    out = hh.send(
        v27(
            pid40(
                "^PRN^PH^^44^113^5550001~^ORN^CP^^^^^^^^^+447700900001"
                "~^NET^Internet^jane@example.org~^WPN^FX^^44^113^5550009"
                "~^emr^PH^^44^113^5550000"
            )
        )
    )
    assert out.status == "accepted" and b"MSA|AA|" in out.ack and b"ERR|" not in out.ack
    hh.drain()
    phones = hh.chart("M100")["phones"]
    assert [(p["number"], p["use"], p["equipment"], p["email"], p["source"]) for p in phones] == [
        ("44 113 5550001", "PRN", "PH", None, "telecom"),
        ("+447700900001", "ORN", "CP", None, "telecom"),
        (None, "NET", "Internet", "jane@example.org", "telecom"),
        ("44 113 5550009", "WPN", "FX", None, "telecom"),
        ("44 113 5550000", "EMR", "PH", None, "telecom"),
    ]


def test_truncated_values_are_stored_without_the_mark_and_flagged(engine, client, tokens):
    """A value ending with MSH-2's truncation character is stored without it; the ACK is AA with a
    W (warning) ERR saying "truncated", the journal row and the message API carry the warning,
    locations only (no patient data)."""
    hh = Harness(engine)
    out = hh.send(v27(pid40("", name="DOE-SMITHERINGT#^JANE", address="1 VERY LONG STREET NA#^^LEEDS")))
    assert out.status == "accepted" and b"MSA|AA|" in out.ack
    err = [s for s in out.ack.split(b"\r") if s.startswith(b"ERR|")]
    assert err and b"truncated" in err[0] and b"|W|" in err[0] and b"SMITHER" not in err[0]
    hh.drain()
    c = hh.chart("M100")
    assert c["name"]["family"] == "DOE-SMITHERINGT"
    assert c["addresses"][0]["street"] == "1 VERY LONG STREET NA"
    with engine.connect() as conn:
        warning = conn.execute(select(messages.c.warning).where(messages.c.id == out.message_id)).scalar_one()
    assert warning.startswith("truncated:") and "PID-5" in warning and "PID-11" in warning
    body = client.get(f"/api/messages/{out.message_id}", headers=h(tokens["clerk"])).json()
    assert body["warnings"] == [warning]


def test_escaped_truncation_character_is_data(engine):
    """``\\P\\`` is the truncation character as data (kept, no warning); a ``#`` inside a value
    is data too; only a value's last character can be the mark."""
    hh = Harness(engine)
    out = hh.send(v27(pid40("", address="FLAT \\P\\2 #3 HIGH ST^^LEEDS")))
    assert b"ERR|" not in out.ack
    hh.drain()
    assert hh.chart("M100")["addresses"][0]["street"] == "FLAT #2 #3 HIGH ST"


def test_before_v27_hash_is_ordinary_data(engine):
    """A v2.5.1 message with four encoding characters has no truncation character: a trailing
    ``#`` is data and no warning is given."""
    hh = Harness(engine)
    out = hh.send(v27(pid40("", address="UNIT 5#^^LEEDS"), enc="^~\\&", version="2.5.1"))
    assert b"ERR|" not in out.ack
    hh.drain()
    assert hh.chart("M100")["addresses"][0]["street"] == "UNIT 5#"


def test_charset_and_truncation_warnings_are_listed_separately(engine, client, tokens):
    """A message with bytes not in its MSH-18 character set and a truncated value shows both
    warnings in the message API."""
    hh = Harness(engine)
    raw = v27(pid40("", name="D\u00d6E#^JANE")).replace("|2.7\r", "|2.7||||||ASCII\r")
    out = hh.send(raw.encode("utf-8"))
    assert out.status == "accepted"
    body = client.get(f"/api/messages/{out.message_id}", headers=h(tokens["clerk"])).json()
    assert len(body["warnings"]) == 2
    assert "MSH-18" in body["warnings"][0] and body["warnings"][1].startswith("truncated:")
