"""The fallback character set: a message without MSH-18 whose bytes are not valid UTF-8 is read
in the channel's ``fallback_charset`` (default Windows-1252, a superset of ISO 8859-1 in the
printable range); valid UTF-8 is still read as UTF-8; MSH-18 still wins when present."""

from __future__ import annotations

import warnings

import pytest
from pydantic import ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # this starlette warns at import about httpx2; the client works
    from fastapi.testclient import TestClient

from interface.hl7.message import decode
from interface.store import chart, chart_read
from tests.test_destinations import Rig, channel


def _adt(cid: str, family: bytes, msh18: bytes = b"") -> bytes:
    msh = b"MSH|^~\\&|REG|HOSP|INT|HOSP|20260301100000||ADT^A01^ADT_A01|" + cid.encode() + b"|P|2.5.1"
    if msh18:
        msh += b"||||||" + msh18
    return (
        b"\r".join(
            [
                msh,
                b"EVN|A01|20260301100000",
                b"PID|1||M1^^^HOSP^MR||" + family + b"^JANE||19800101|F",
                b"PV1|1|I|W1^101^A^HOSP",
            ]
        )
        + b"\r"
    )


def _family(db) -> str:
    with db.connect() as conn:
        return chart_read.get_chart(conn, "M1")["name"]["family"]


def test_default_fallback_reads_0x92_as_windows_1252_apostrophe(engine):
    """No MSH-18, byte 0x92 (not UTF-8): read as Windows-1252 (U+2019), stored so, AA with a
    warning ERR (severity W) saying how it was read."""
    rig = Rig(engine, channel())
    out = rig.send(_adt("C1", b"O\x92BRIEN"))
    assert out.ack_code == "AA"
    assert b"Windows-1252" in out.ack and b"|W" in out.ack
    assert _family(engine) == "O\u2019BRIEN"


def test_utf8_bytes_without_msh18_stay_utf8(engine):
    """Valid UTF-8 without MSH-18 is read as UTF-8 whatever the fallback (detection kept)."""
    rig = Rig(engine, channel(fallback_charset="8859/15"))
    out = rig.send(_adt("C2", "MÜLLER".encode()))
    assert out.ack_code == "AA" and b"ERR" not in out.ack
    assert _family(engine) == "MÜLLER"


def test_channel_fallback_iso_8859_15_reads_0xa4_as_euro(engine):
    """fallback_charset: 8859/15 — byte 0xA4 is the euro sign there (the currency sign in
    Windows-1252/8859-1), 0xBD is œ."""
    rig = Rig(engine, channel(fallback_charset="8859/15"))
    out = rig.send(_adt("C3", b"C\xbdUR\xa4"))
    assert out.ack_code == "AA" and b"iso8859-15" in out.ack
    assert _family(engine) == "CœUR€"


def test_channel_fallback_utf8_replaces_and_warns(engine):
    """fallback_charset: UNICODE UTF-8 — 0x92 is not UTF-8: replaced (U+FFFD), never dropped
    silently (the raw bytes are kept), and the ACK's warning names the byte."""
    rig = Rig(engine, channel(fallback_charset="UNICODE UTF-8"))
    raw = _adt("C4", b"O\x92BRIEN")
    out = rig.send(raw)
    assert out.ack_code == "AA" and b"is not valid UTF-8 and no MSH-18" in out.ack
    assert _family(engine) == "O\ufffdBRIEN"
    from sqlalchemy import select

    from interface.store.schema import messages

    with engine.connect() as conn:
        assert conn.execute(select(messages.c.raw).where(messages.c.control_id == "C4")).scalar_one() == raw


def test_msh18_wins_over_the_fallback(engine):
    """MSH-18 8859/1 is obeyed even on a channel whose fallback is 8859/15 (0xA4 stays ¤)."""
    rig = Rig(engine, channel(fallback_charset="8859/15"))
    out = rig.send(_adt("C5", b"X\xa4", msh18=b"8859/1"))
    assert out.ack_code == "AA"
    assert _family(engine) == "X\u00a4"


def test_fallback_charset_must_be_known():
    """An unknown name is a config error naming the field; names are table 0211's (any case)."""
    with pytest.raises(ValidationError, match="unknown character set"):
        channel(fallback_charset="klingon")
    assert channel(fallback_charset="unicode utf-8").fallback_codec == "utf-8"
    assert channel().fallback_codec == "cp1252"
    assert decode(b"MSH|^~\\&|\x92").charset == "cp1252"  # decode's own default is unchanged


def test_api_and_console_show_the_text_read_with_the_channel_fallback(engine):
    """The message view (GET /api/messages/{id}, revealed; the console pages use the same
    ``fallback_codec_for``) reads the
    stored bytes with the channel's fallback character set, as the engine did when it applied
    them: 0xA4 is shown as € on an 8859/15 channel, not as Windows-1252's ¤."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from interface.desk import users
    from interface.store.schema import messages
    from interface.web.app import create_app

    now = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    ch = channel(fallback_charset="8859/15")
    Rig(engine, ch).send(_adt("C6", b"C\xbdUR\xa4"))
    with engine.begin() as conn:
        users.add_user(conn, "ana", "analyst", "correct horse battery staple 7", now=now)
        token = users.new_token(conn, "ana", now=now)
        message_id = conn.execute(select(messages.c.id).where(messages.c.control_id == "C6")).scalar_one()
    app = create_app(engine, channels=[ch], clock=lambda: now)
    with TestClient(app) as client:
        r = client.get(
            f"/api/messages/{message_id}",
            params={"reveal": "true", "reason": "charset check"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        assert "C\u0153UR\u20ac" in r.json()["raw"]
        assert "\u00a4" not in r.json()["raw"]
    # a channel no longer configured: read with the default (Windows-1252), as documented
    with TestClient(create_app(engine, channels=[], clock=lambda: now)) as client:
        r = client.get(
            f"/api/messages/{message_id}",
            params={"reveal": "true", "reason": "charset check"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert "CUR\u00a4".replace("U", "\u00bdU") in r.json()["raw"]
