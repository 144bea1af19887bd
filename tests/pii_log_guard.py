"""A pytest plugin: no test patient's name or identifier in any log line of the whole run.

Enabled from ``tests/conftest.py``. For the whole session it watches

* every record of the ``interface`` loggers (and ``twisted``'s, bridged by ``interface.engine.logsetup``),
  at INFO and up -- the level ``interface run`` logs at -- formatted as ``interface.engine.logsetup``
  formats them in production (so what is checked is what a log file would hold);
* Twisted's own log (``globalLogPublisher``: unhandled failures, listener errors);
* the log of every ``interface`` process the tests start: ``INTERFACE_LOG_COPY_DIR`` is set for the
  session, and ``logsetup.configure`` in a child copies its log lines there, one file per process.

and at the end fails the run (exit status 1, with the offending logger, test and pattern) if any
line contains one of the test patients' names, MRNs, SSNs or NHS numbers. The list is collected
from the messages the tests send: ``sample_messages/``, ``tests/corpus/`` and the HL7 text in
``tests/*.py`` and ``interface/bench*.py`` (PID-3, PID-5, PID-6, PID-9, PID-19), plus the generated names of
``tests/reliability_kit.py``. Words that occur in the ``interface`` package's own source (segment
ids, code words such as ``TEST`` or ``PATIENT``) are left out: a log line may contain them without
carrying data. pytest's own output (assertion rewriting, captured stdout) is never inspected.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WATCHED = ("interface", "twisted")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z][A-Za-z'-]{2,}\Z")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{4,}[A-Za-z0-9]\Z")
GENERATED = [r"S\d{6}"]  # reliability_kit.given_of: S000001, S000002, ...


def _pid_segments(text: str) -> list[str]:
    text = text.replace("\\r", "\r").replace("\\n", "\n")
    return [s for s in re.split(r"[\r\n]+", text) if s.startswith("PID|")]


def _code_words() -> set[str]:
    words: set[str] = set()
    for f in (ROOT / "interface").rglob("*"):
        if f.name.startswith("bench"):  # its synthetic messages are test patients, not code
            continue
        if f.suffix in (".py", ".html", ".yaml", ".ini", ".j2") and f.is_file():
            words |= {w.upper() for w in _WORD.findall(f.read_text(encoding="utf-8", errors="replace"))}
    return words


def _split(value: str, sep: str) -> list[str]:
    return value.split(sep) if value else []


def collect(sources: list[Path] | None = None) -> tuple[set[str], set[str]]:
    """(names, identifiers) of the test patients in ``sources`` (files of HL7 or Python text)."""
    if sources is None:
        sources = [
            *sorted((ROOT / "sample_messages").rglob("*.hl7")),
            *sorted((ROOT / "tests" / "corpus").rglob("*.hl7")),
            *sorted((ROOT / "tests").glob("*.py")),
            *sorted((ROOT / "interface").glob("bench*.py")),
        ]
    names: set[str] = set()
    ids: set[str] = set()
    for f in sources:
        text = f.read_text(encoding="utf-8", errors="replace")
        for seg in _pid_segments(text):
            fields = seg.split("|")
            get = lambda n: fields[n] if n < len(fields) else ""  # noqa: E731
            for rep in _split(get(3), "~") + _split(get(19), "~"):
                value = rep.split("^")[0].strip()
                if "{" not in value and _ID.match(value) and any(c.isdigit() for c in value):
                    ids.add(value)
            for n in (5, 6, 9):
                for rep in _split(get(n), "~"):
                    for comp in rep.split("^")[:3]:  # family (its surname), given, middle
                        token = comp.split("&")[0].strip()
                        if "{" not in token and _NAME.match(token):
                            names.add(token)
    code = _code_words()
    names = {n for n in names if n.upper() not in code}
    ids = {i for i in ids if i.upper() not in code}
    return names, ids


def pattern(names: set[str], ids: set[str]) -> re.Pattern:
    words = sorted(names | ids, key=len, reverse=True)
    alternatives = [re.escape(w) for w in words] + GENERATED
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alternatives) + r")(?![A-Za-z0-9])")


@dataclass
class Hit:
    source: str  # logger name, "twisted" or the process log file
    test: str
    found: str


class Guard(logging.Handler):
    def __init__(self, rx: re.Pattern):
        super().__init__(logging.INFO)
        from interface.engine.logsetup import FORMAT, RedactingFormatter

        self.rx = rx
        self.setFormatter(RedactingFormatter(FORMAT))
        self.hits: list[Hit] = []
        self.test = "(session)"
        self.seen = 0
        self.processes = 0

    def scan(self, source: str, text: str) -> None:
        self.seen += 1
        for m in self.rx.finditer(text):
            self.hits.append(Hit(source, self.test, m.group(0)))

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if not any(name == w or name.startswith(w + ".") for w in WATCHED):
            return
        try:
            self.scan(name, self.format(record))
        except Exception:  # pragma: no cover - a record that cannot be formatted
            self.scan(name, str(record.msg))

    def twisted_event(self, event: dict) -> None:
        """Every event of Twisted's log, with its failure's traceback, redacted as the bridge
        into the stdlib handlers (``logsetup.route_twisted``) would be."""
        from twisted.logger import formatEventAsClassicLogText

        from interface.engine.logsetup import redact

        try:
            text = formatEventAsClassicLogText(event) or ""
        except Exception:  # pragma: no cover - Twisted formats its own failures to text
            text = repr(event.get("log_format"))
        self.scan("twisted", redact(text))


class Plugin:
    def __init__(self) -> None:
        names, ids = collect()
        self.guard = Guard(pattern(names, ids))
        self.count = len(names) + len(ids)
        self.copy_dir = Path(tempfile.mkdtemp(prefix="interface-logs-"))
        self._saved: dict = {}

    # -- session ---------------------------------------------------------------------------------
    def pytest_sessionstart(self, session) -> None:
        from twisted.logger import globalLogPublisher

        logging.getLogger().addHandler(self.guard)
        for name in WATCHED:
            lg = logging.getLogger(name)
            self._saved[name] = lg.level
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
        globalLogPublisher.addObserver(self.guard.twisted_event)
        self._saved["env"] = os.environ.get("INTERFACE_LOG_COPY_DIR")
        os.environ["INTERFACE_LOG_COPY_DIR"] = str(self.copy_dir)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.guard.test = item.nodeid
        yield
        self.guard.test = "(between tests)"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self.guard.twisted_event)
        logging.getLogger().removeHandler(self.guard)
        for name in WATCHED:
            logging.getLogger(name).setLevel(self._saved.get(name, logging.NOTSET))
        if self._saved.get("env") is None:
            os.environ.pop("INTERFACE_LOG_COPY_DIR", None)
        else:
            os.environ["INTERFACE_LOG_COPY_DIR"] = self._saved["env"]
        self.guard.test = "(a process the tests started)"
        for f in sorted(self.copy_dir.glob("*.log")):
            self.guard.scan(f"process log {f.name}", f.read_text(encoding="utf-8", errors="replace"))
            self.guard.processes += 1
            f.unlink()
        try:
            self.copy_dir.rmdir()
        except OSError:
            pass
        if self.guard.hits:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        hits = self.guard.hits
        if not hits:
            terminalreporter.write_line(
                f"pii log guard: {self.guard.seen - self.guard.processes} log records and the logs of "
                f"{self.guard.processes} process(es) checked for {self.count} test-patient names and "
                f"identifiers: none found"
            )
            return
        terminalreporter.section("patient data in logs (tests/pii_log_guard.py)", red=True)
        for h in hits[:50]:
            terminalreporter.write_line(f"{h.test}: {h.source}: {h.found!r}")
        if len(hits) > 50:
            terminalreporter.write_line(f"... and {len(hits) - 50} more")


def pytest_configure(config) -> None:
    config.pluginmanager.register(Plugin(), "pii-log-guard")
