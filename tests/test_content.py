"""Document content from OBX-5 and the SHA-256 content store."""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import func, select

from interface.hl7.errors import DataError, PermanentError
from interface.hl7.message import decode, parse
from interface.store import content
from interface.store.content import ContentStore, extract_content, media_type
from interface.store.document_schema import document_blobs
from tests.conftest import corpus_files

MSH = "MSH|^~\\&|DOCS|HOSP|IF|HOSP|20261120100000||MDM^T02|C1|P|2.5.1"


def msg(*obx: str):
    return parse("\r".join([MSH, "TXA|1|HP|TX", *obx]))


def test_text_lines_joined_with_newlines():
    """TX, FT, ST and CF lines (and TX repetitions) form one text part, joined by newlines."""
    parts = extract_content(
        msg(
            "OBX|1|TX|HP||Line one~Line two||||||F",
            "OBX|2|ST|HP||A string||||||F",
            "OBX|3|CF|HP||CODE^Formatted \\.br\\text||||||F",
            "OBX|4|FT|HP||Tail||||||F",
        )
    )
    assert len(parts) == 1 and parts[0].kind == "text" and parts[0].media_type == "text/plain"
    assert parts[0].text == "Line one\nLine two\nA string\nFormatted \ntext\nTail"


def test_formatting_and_delimiter_escapes_resolved():
    """\\.br\\ becomes a line break, \\.sp2\\ two, and \\F\\ \\S\\ \\T\\ \\E\\ their characters."""
    parts = extract_content(msg("OBX|1|FT|HP||a\\.br\\b\\.sp2\\c \\F\\ \\S\\ \\T\\ \\E\\||||||F"))
    assert parts[0].text == "a\nb\n\nc | ^ & \\"


def test_deleted_and_wrong_results_skipped():
    """OBX with result status D or W contributes nothing."""
    parts = extract_content(
        msg("OBX|1|TX|HP||kept||||||F", "OBX|2|TX|HP||gone||||||W", "OBX|3|TX|HP||gone too||||||D")
    )
    assert parts[0].text == "kept"


def test_ed_base64_decoded_with_media_type():
    """ED Base64 data is decoded; line breaks and missing padding are tolerated."""
    data = b"%PDF-1.4\nhello pdf"
    b64 = base64.b64encode(data).decode().rstrip("=")
    split = b64[:8] + "\\.br\\" + b64[8:]
    parts = extract_content(msg(f"OBX|1|ED|PDF||HOSP^AP^PDF^Base64^{split}||||||F"))
    assert len(parts) == 1 and parts[0].kind == "binary"
    assert parts[0].data == data and parts[0].media_type == "application/pdf"


def test_ed_hex_and_ascii_encodings():
    """ED Hex is decoded from hex digits; encoding A is the text itself as UTF-8."""
    parts = extract_content(
        msg(
            "OBX|1|ED|X||^TEXT^RTF^Hex^7B5C727466317D||||||F",
            "OBX|2|ED|X||^TEXT^HTML^A^<b>hi\\T\\bye</b>||||||F",
        )
    )
    assert (parts[0].data, parts[0].media_type) == (b"{\\rtf1}", "text/rtf")
    assert (parts[1].data, parts[1].media_type) == (b"<b>hi&bye</b>", "text/html")


def test_ed_split_over_repetitions():
    """An ED whose data continues in further OBX-5 repetitions is joined before decoding."""
    b64 = base64.b64encode(b"0123456789abcdef").decode()
    parts = extract_content(msg(f"OBX|1|ED|X||^AP^PDF^Base64^{b64[:8]}~{b64[8:]}||||||F"))
    assert parts[0].data == b"0123456789abcdef"


def test_invalid_base64_is_data_error_at_obx5():
    """Undecodable Base64 is a DataError pointing at OBX-5.5 of that OBX occurrence."""
    with pytest.raises(DataError) as exc:
        extract_content(msg("OBX|1|TX|HP||ok||||||F", "OBX|2|ED|X||^AP^PDF^Base64^<Base64 encoded>||||||F"))
    assert str(exc.value.location) == "OBX-5.5" and exc.value.location.sequence == 2
    assert exc.value.code == "102" and exc.value.reason == "invalid_value"


def test_unknown_ed_encoding_is_data_error():
    """An ED-4 encoding outside Base64/Hex/A is a DataError at OBX-5.4."""
    with pytest.raises(DataError) as exc:
        extract_content(msg("OBX|1|ED|X||^AP^PDF^UUENCODE^abc||||||F"))
    assert str(exc.value.location) == "OBX-5.4"


def test_rp_stored_as_reference():
    """RP gives a reference part (application:pointer) with the media type of its type/subtype."""
    parts = extract_content(msg("OBX|1|RP|X||docs/123.pdf^PACS^AP^PDF||||||F"))
    assert (parts[0].kind, parts[0].reference, parts[0].media_type) == (
        "reference",
        "PACS:docs/123.pdf",
        "application/pdf",
    )


def test_non_content_value_types_ignored():
    """NM/CE observations are not document content."""
    assert extract_content(msg("OBX|1|NM|HR||72|bpm|||||F", "OBX|2|CE|X||A^B||||||F")) == []


@pytest.mark.parametrize(
    "type_of_data, subtype, expected",
    [
        ("AP", "PDF", "application/pdf"),
        ("", "text/html", "text/html"),
        ("IM", "JPEG", "image/jpeg"),
        ("TEXT", "", "text/plain"),
        ("AP", "vnd.custom", "application/vnd.custom"),
        ("", "", "application/octet-stream"),
        ("Application", "RTF", "text/rtf"),
    ],
)
def test_media_types(type_of_data, subtype, expected):
    """ED/RP type of data and subtype map to media types; MIME subtypes pass through."""
    assert media_type(type_of_data, subtype) == expected


def test_size_limit_checked_before_decoding():
    """A payload larger than max_bytes is content_too_large, for ED and for text."""
    b64 = base64.b64encode(b"x" * 300).decode()
    with pytest.raises(PermanentError) as exc:
        extract_content(msg(f"OBX|1|ED|X||^AP^PDF^Base64^{b64}||||||F"), max_bytes=100)
    assert exc.value.reason == "content_too_large" and str(exc.value.location) == "OBX-5.5"
    with pytest.raises(PermanentError) as exc:
        extract_content(msg("OBX|1|TX|HP||" + "y" * 101 + "||||||F"), max_bytes=100)
    assert exc.value.reason == "content_too_large"
    assert extract_content(msg("OBX|1|TX|HP||" + "y" * 100 + "||||||F"), max_bytes=100)[0].text == "y" * 100


def test_corpus_camel_ed_html_is_decoded_as_declared():
    """camel MDM^T02: the Base64 filler decodes (it is not real HTML) and is kept as text/html."""
    m = parse(decode(corpus_files("camel-mdm_t02-v25-ed-html.hl7")[0].read_bytes()).text)
    parts = extract_content(m)
    assert len(parts) == 1 and parts[0].media_type == "text/html" and len(parts[0].data) == 359


def test_corpus_v2tofhir_placeholder_is_data_error():
    """v2-to-FHIR MDM^T02: TX/FT/ST read fine but the ED '<Base64 encoded>' placeholder is refused."""
    m = parse(decode(corpus_files("v2tofhir-mdm_t02-v251-tx-ft-ed.hl7")[0].read_bytes()).text)
    with pytest.raises(DataError) as exc:
        extract_content(m)
    assert exc.value.location.sequence == 4 and str(exc.value.location) == "OBX-5.5"
    text_only = parse("\r".join(s for s in m.text.split("\r") if not s.startswith("OBX|4|")))
    text = extract_content(text_only)[0].text
    assert "Critical Values Entered On:" in text and "\nCalled Critical Value Reported \n" in text
    assert text.endswith("Table formatting from the original result was not included.")


def test_corpus_rethink_tx():
    """rethink MDM^T02: one TX line."""
    m = parse(decode(corpus_files("rethink-mdm_t02-v251.hl7")[0].read_bytes()).text)
    assert extract_content(m)[0].text.startswith("Patient presents with complaints")


def test_database_store_keeps_identical_bytes_once(engine):
    """The table backend stores bytes under their SHA-256 once and returns them."""
    store = ContentStore(None, max_bytes=1000)
    with engine.begin() as conn:
        sha = store.put(conn, b"abc")
        assert store.put(conn, b"abc") == sha == hashlib.sha256(b"abc").hexdigest()
        assert conn.execute(select(func.count()).select_from(document_blobs)).scalar() == 1
        assert store.get(conn, sha) == b"abc"
        assert store.get(conn, "0" * 64) is None


def test_directory_store_layout_and_limit(engine, tmp_path):
    """The directory backend writes ab/cdef... once (in place when the transaction commits,
    readable in it before); content over max_bytes is refused."""
    store = ContentStore(tmp_path / "store", max_bytes=5)
    tmp_path = tmp_path / "store"
    with engine.begin() as conn:
        sha = store.put(conn, b"12345")
        store.put(conn, b"12345")
        assert store.get(conn, sha) == b"12345"
        with pytest.raises(PermanentError) as exc:
            store.put(conn, b"123456")
        assert exc.value.reason == "content_too_large"
        assert store.get(conn, "../../etc/passwd") is None
    assert (tmp_path / sha[:2] / sha[2:]).read_bytes() == b"12345"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha[2:]]
    with engine.connect() as conn:
        assert store.get(conn, sha) == b"12345"
    assert store.put(None, b"abc") == hashlib.sha256(b"abc").hexdigest()  # outside a transaction:
    assert (tmp_path / hashlib.sha256(b"abc").hexdigest()[:2]).is_dir()  # written at once


def test_directory_blobs_are_durable_before_the_commit_and_gone_with_a_rollback(
    engine, tmp_path, monkeypatch
):
    """A transaction's blobs are fsynced (together) before its COMMIT and renamed into place; a
    rollback leaves no file; an fsync that fails fails the COMMIT, and nothing is in place."""
    from sqlalchemy import text

    store = ContentStore(tmp_path, max_bytes=1 << 20)
    synced: list[str] = []
    real = content._fsync
    monkeypatch.setattr(content, "_fsync", lambda p: (synced.append(p), real(p)))
    blobs = [bytes([i]) * 1000 for i in range(3)]
    with engine.begin() as conn:
        shas = [store.put(conn, b) for b in blobs]
        assert synced == []
    assert len(synced) == 3
    assert [(tmp_path / s[:2] / s[2:]).read_bytes() for s in shas] == blobs
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            sha = store.put(conn, b"rolled back")
            raise RuntimeError("the group failed")
    assert not (tmp_path / sha[:2]).exists() or not any((tmp_path / sha[:2]).iterdir())

    def broken(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(content, "_fsync", broken)
    with pytest.raises(OSError):
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            sha = store.put(conn, b"not durable")
    assert not (tmp_path / sha[:2]).exists() or not any((tmp_path / sha[:2]).iterdir())


def test_a_100_kb_document_round_trips_byte_exact(engine, tmp_path):
    """The bench's 100 KB MDM^T02 (a base64 PDF in OBX-5): the stored bytes are the PDF, byte
    for byte, in both backends; a line-wrapped copy of the same Base64 decodes the same."""
    import random

    from interface.ops.bench_workload import mdm_t02

    frame = mdm_t02("M1", "DOC-1", "C1", 0.0, random.Random(3))
    text = frame[1:-2].decode()
    b64 = text.split("^Base64^", 1)[1].split("|", 1)[0]
    pdf = base64.b64decode(b64)
    assert len(text) > 100_000 and pdf.startswith(b"%PDF")
    parts = extract_content(parse(text))
    assert parts[0].data == pdf and parts[0].media_type == "application/pdf"
    wrapped = " ".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert extract_content(parse(text.replace(b64, wrapped)))[0].data == pdf
    for store in (ContentStore(None), ContentStore(tmp_path)):
        with engine.begin() as conn:
            sha = store.put(conn, parts[0].data)
        with engine.connect() as conn:
            assert store.get(conn, sha) == pdf and sha == hashlib.sha256(pdf).hexdigest()
