"""No patient data in logs: a failing statement's bound values never reach a log line
(``hide_parameters=True`` on every engine, ``interface.engine.logsetup`` redaction), and the session-wide
guard (tests/pii_log_guard.py) sees what it must see."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import uuid
from datetime import date

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from interface.engine import logsetup
from tests import pii_log_guard
from tests.conftest import ROOT

FAMILY, BORN = "CHEN", date(1984, 3, 12)  # a test patient of sample_messages/adt


def _logged(exc: BaseException) -> str:
    """What an ``interface`` logger's handler, set up as ``interface run`` sets it up, writes."""
    out = io.StringIO()
    handler = logsetup.install(logging.StreamHandler(out))
    log = logging.getLogger("interface.test_logs_no_phi")
    log.addHandler(handler)
    try:
        log.error("statement failed", exc_info=exc)
    finally:
        log.removeHandler(handler)
    return out.getvalue()


@pytest.fixture
def probe_table(engine):
    name = f"phi_probe_{uuid.uuid4().hex[:8]}"
    with engine.begin() as c:
        c.execute(
            text(
                f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, family VARCHAR(40) NOT NULL UNIQUE, born DATE)"
            )
        )
    try:
        yield name
    finally:
        with engine.begin() as c:
            c.execute(text(f"DROP TABLE {name}"))


def test_unique_violation_with_a_patient_name_bound(engine, probe_table):
    insert = text(f"INSERT INTO {probe_table} (id, family, born) VALUES (:id, :family, :born)")
    with engine.begin() as c:
        c.execute(insert, {"id": 1, "family": FAMILY, "born": BORN})
    with pytest.raises(IntegrityError) as caught:
        with engine.begin() as c:
            c.execute(insert, {"id": 2, "family": FAMILY, "born": BORN})
    assert "hide_parameters=True" in str(caught.value)  # the engine hid them
    out = _logged(caught.value)
    assert "statement failed" in out and "IntegrityError" in out and "Traceback" in out
    assert FAMILY not in out and "1984" not in out, out
    if engine.dialect.name == "postgresql":  # "DETAIL:  Key (family)=(CHEN) already exists."
        assert "DETAIL:  [redacted]" in out, out


def test_bad_value_quoted_by_the_database_is_not_logged(engine):
    # PostgreSQL quotes the value it cannot read; SQLite fails on the column (the value bound)
    stmt = (
        "SELECT CAST(:family AS DATE)"
        if engine.dialect.name == "postgresql"
        else "SELECT no_such_column, :family"
    )
    with pytest.raises(DBAPIError) as caught:
        with engine.connect() as c:
            c.execute(text(stmt), {"family": FAMILY})
    out = _logged(caught.value)
    assert "Traceback" in out and FAMILY not in out, out
    if engine.dialect.name == "postgresql":
        assert 'invalid input syntax for type date: "[redacted]"' in out, out


def test_without_hide_parameters_the_value_would_be_there(engine):
    """The two tests above can fail: an engine created without hide_parameters prints them."""
    plain = create_engine(
        engine.url.render_as_string(hide_password=False).replace("postgresql://", "postgresql+psycopg://", 1)
    )
    try:
        with pytest.raises(DBAPIError) as caught:
            with plain.connect() as c:
                c.execute(text("SELECT no_such_column, :family"), {"family": FAMILY})
    finally:
        plain.dispose()
    assert "[parameters: " in str(caught.value) and FAMILY in str(caught.value)
    assert FAMILY not in logsetup.redact(str(caught.value))  # and the redaction still catches it


@pytest.mark.parametrize(
    "raw,clean",
    [
        (
            "(sqlite3.IntegrityError) UNIQUE constraint failed: t.family\n[SQL: INSERT INTO t VALUES (?, ?)]\n"
            "[parameters: (2, 'CHEN')]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)",
            "(sqlite3.IntegrityError) UNIQUE constraint failed: t.family\n[SQL: INSERT INTO t VALUES (?, ?)]\n"
            "[parameters: [redacted]]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)",
        ),
        ("[parameters: {'family': 'A]B', 'given': 'X'}]", "[parameters: [redacted]]"),
        (
            '(psycopg.errors.NotNullViolation) null value in column "mrn" of relation "patients" violates not-null '
            "constraint\nDETAIL:  Failing row contains (7, null, RIVERA, ANNA).",
            '(psycopg.errors.NotNullViolation) null value in column "mrn" of relation "patients" violates not-null '
            "constraint\nDETAIL:  [redacted]",
        ),
        (
            'psycopg.errors.InvalidDatetimeFormat: invalid input syntax for type date: "RIVERA"',
            'psycopg.errors.InvalidDatetimeFormat: invalid input syntax for type date: "[redacted]"',
        ),
        ("channel=adt stored 3 message(s)", "channel=adt stored 3 message(s)"),
        ('listening on "tcp:2575"', 'listening on "tcp:2575"'),  # not a database line: kept
    ],
)
def test_redact(raw, clean):
    assert logsetup.redact(raw) == clean
    assert logsetup.redact(clean) == clean


def test_configured_process_log_is_redacted_and_copied(tmp_path):
    """``logsetup.configure`` in a process (as ``interface run`` calls it): stderr and the
    ``INTERFACE_LOG_COPY_DIR`` copy both redacted; Twisted's failures go through it too."""
    code = (
        "import logging\n"
        "from interface.engine import logsetup\n"
        "logsetup.configure()\n"
        "try:\n"
        '    raise RuntimeError("(psycopg.errors.UniqueViolation) duplicate key\\n'
        "DETAIL:  Key (family)=(RIVERA) already exists.\\n[SQL: INSERT]\\n[parameters: ('RIVERA',)]\")\n"
        "except RuntimeError as exc:\n"
        "    logging.getLogger('interface.engine.inbound').error('journal commit failed: %s', type(exc).__name__, exc_info=True)\n"
        "from twisted.python.failure import Failure\n"
        "from twisted.logger import Logger\n"
        "try:\n"
        "    raise ValueError('invalid input syntax for type date: \"RIVERA\"')\n"
        "except ValueError:\n"
        "    Logger().failure('unhandled', Failure())\n"
    )
    env = {"PATH": "/usr/bin:/bin", logsetup.COPY_DIR: str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert p.returncode == 0, p.stderr
    copies = list(tmp_path.glob("*.log"))
    assert len(copies) == 1
    for out in (p.stderr, copies[0].read_text()):
        assert "journal commit failed: RuntimeError" in out and "Traceback" in out
        assert "ValueError" in out and "unhandled" in out  # Twisted's log, bridged
        assert "RIVERA" not in out, out
        assert "[parameters: [redacted]]" in out and "DETAIL:  [redacted]" in out


# -- the guard itself -------------------------------------------------------------------------------


def test_guard_collects_the_test_patients(tmp_path):
    f = tmp_path / "m.hl7"
    f.write_text(
        "MSH|^~\\&|A|B|C|D|20260301||ADT^A01|1|P|2.5.1\r"
        "PID|1||MRN7654321^^^HOSP^MR~123-45-6789^^^SSA^SS||QUIXOTE^ALONSO^Q||19800101|M"
        "|||||||||||987-65-4321\r"
    )
    names, ids = pii_log_guard.collect([f])
    assert {"QUIXOTE", "ALONSO"} <= names
    assert {"MRN7654321", "123-45-6789", "987-65-4321"} <= ids
    rx = pii_log_guard.pattern(names, ids)
    assert rx.search("stored for QUIXOTE") and rx.search("ssn=987-65-4321")
    assert not rx.search("QUIXOTES") and not rx.search("MRN76543210")  # whole words only
    assert rx.search("given S000042")  # reliability_kit's generated names


def test_the_session_list_has_the_sample_patients():
    names, ids = pii_log_guard.collect()
    assert {"CHEN", "RIVERA", "JANE", "DOE"} <= names
    assert "PID" not in names and "TEST" not in names  # code words are not names


def test_guard_reads_only_interface_and_twisted_records():
    guard = pii_log_guard.Guard(pii_log_guard.pattern({"QUIXOTE"}, set()))

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    guard.emit(record("_pytest.assertion", "assert 'QUIXOTE' == 'X'"))  # pytest's own: not read
    guard.emit(record("sqlalchemy.engine", "QUIXOTE"))
    assert guard.hits == []
    guard.emit(record("interface.engine.inbound", "patient QUIXOTE"))
    guard.emit(record("twisted", "QUIXOTE"))
    assert [(h.source, h.found) for h in guard.hits] == [
        ("interface.engine.inbound", "QUIXOTE"),
        ("twisted", "QUIXOTE"),
    ]
    # what it checks is what production writes: SQL parameter dumps are redacted first
    guard.hits.clear()
    guard.emit(record("interface.store.db", "failed\n[parameters: ('QUIXOTE',)]"))
    assert guard.hits == []


def test_guard_fails_a_run_that_logs_a_patient(tmp_path):
    """A whole pytest run (in a subprocess) whose test logs a sample patient's name exits 1."""
    t = tmp_path / "test_leak.py"
    t.write_text(
        "import logging\n\ndef test_leak():\n"
        "    logging.getLogger('interface.engine.inbound').warning('stored %s', 'RIVERA')\n"
    )
    c = tmp_path / "conftest.py"
    c.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom tests import pii_log_guard\n\n"
        "def pytest_configure(config):\n    pii_log_guard.pytest_configure(config)\n" % str(ROOT)
    )
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(t)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "1 passed" in p.stdout and "patient data in logs" in p.stdout
    assert "test_leak.py::test_leak: interface.engine.inbound: 'RIVERA'" in p.stdout
