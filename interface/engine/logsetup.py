"""Logging for the long-running commands, with patient data kept out of every line.

A failing SQL statement is the one place where message content would reach a log by itself:
SQLAlchemy's exceptions end with ``[parameters: (...)]`` (the bound values: names, birth dates,
identifiers) and PostgreSQL's messages quote the offending value (``invalid input syntax for type
date: "..."``) or the whole row (``DETAIL:  Failing row contains (...)``, ``Key (mrn)=(...)``).
Two layers stop them:

* every engine is created with ``hide_parameters=True`` (:mod:`interface.store.db`): SQLAlchemy then
  writes ``[SQL parameters hidden due to hide_parameters=True]`` instead of the values;
* :func:`configure` installs :class:`RedactFilter` and :class:`RedactingFormatter` on the handlers,
  which :func:`redact` every message and traceback: parameter dumps, ``DETAIL:`` lines and the
  quoted values of database error messages (identifiers such as ``relation "x"`` are kept). It also
  routes Twisted's log (warnings and errors: unhandled failures) into the same handlers.

Nothing here recognises names; the rule for code stays: log ids, counts, types and reasons, never
a field of a message (see docs/reliability.md, "Logs").
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HIDDEN = "[redacted]"

_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background on this error|\Z))", re.S)
_DETAIL = re.compile(r"^(\s*DETAIL:)[^\n]*", re.M)
_DB_LINE = re.compile(
    r"psycopg|sqlite3\.|sqlalchemy\.exc|\(Background on this error|invalid input|"
    r"out of range|violates|Failing row"
)
_QUOTED = re.compile(r"(?P<word>\b\w+\s+)?\"(?P<value>[^\"\n]*)\"")
_IDENTIFIER_WORDS = {
    "relation",
    "column",
    "constraint",
    "table",
    "index",
    "schema",
    "database",
    "function",
    "role",
    "sequence",
    "type",
    "operator",
    "trigger",
    "view",
    "extension",
    "cursor",
    "savepoint",
}


def _quoted(m: re.Match) -> str:
    word = (m["word"] or "").strip().lower()
    if word in _IDENTIFIER_WORDS:
        return m.group(0)
    return f'{m["word"] or ""}"{HIDDEN}"'


def redact(text: str) -> str:
    """``text`` without SQL parameter dumps, ``DETAIL:`` lines or quoted values in database
    error lines. Idempotent; text without any of them comes back unchanged."""
    if not text:
        return text
    if "[parameters: " in text:
        text = _PARAMETERS.sub(f"[parameters: {HIDDEN}]", text)
    if "DETAIL:" in text:
        text = _DETAIL.sub(rf"\1  {HIDDEN}", text)
    if '"' in text and _DB_LINE.search(text):
        text = "\n".join(
            _QUOTED.sub(_quoted, line) if _DB_LINE.search(line) else line for line in text.split("\n")
        )
    return text


class RedactFilter(logging.Filter):
    """Redacts a record in place (message, arguments, exception text) before any formatter sees it,
    so every handler after this one -- file, stderr, a test's capture -- gets the clean text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the formatter to report
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter whose output is :func:`redact`-ed (the last line of defence)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install(handler: logging.Handler) -> logging.Handler:
    """Put the filter and a redacting formatter on a handler (keeping its format string)."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(RedactFilter())
    fmt = handler.formatter
    if fmt is None or type(fmt) is logging.Formatter:  # others' formatters (a test's) are theirs
        handler.setFormatter(RedactingFormatter(fmt._fmt if fmt else FORMAT, fmt.datefmt if fmt else None))
    return handler


_twisted_routed = False


def route_twisted(level: str = "warn") -> None:
    """Twisted's log (unhandled failures, listener errors) into stdlib logging's ``twisted``
    logger, from ``level`` up, so it passes the same redaction. Once per process."""
    global _twisted_routed
    if _twisted_routed:
        return
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        STDLibLogObserver,
        globalLogBeginner,
    )

    observer = FilteringLogObserver(
        STDLibLogObserver(name="twisted"),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    _twisted_routed = True


COPY_DIR = "INTERFACE_LOG_COPY_DIR"


def configure(level: int = logging.INFO, twisted: bool = True) -> None:
    """``interface run`` / ``web`` / the cluster supervisor: INFO to stderr, redacted. With
    ``$INTERFACE_LOG_COPY_DIR`` set, every line also goes to ``<dir>/<pid>.log`` (the test
    suite's log guard reads them: tests/pii_log_guard.py)."""
    import os

    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up chatter is not news
    root = logging.getLogger()
    copy_dir = os.environ.get(COPY_DIR)
    if (
        copy_dir
        and os.path.isdir(copy_dir)
        and not any(getattr(h, "_interface_copy", False) for h in root.handlers)
    ):
        copy = logging.FileHandler(os.path.join(copy_dir, f"{os.getpid()}.log"), encoding="utf-8")
        copy._interface_copy = True
        copy.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(copy)
    for handler in root.handlers:
        install(handler)
    if twisted:
        route_twisted()
