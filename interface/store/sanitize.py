"""Values the database refuses: decided here, the same way on SQLite and PostgreSQL.

PostgreSQL refuses three things in text that SQLite stores without a word: the NUL character,
lone UTF-16 surrogates (not characters, cannot be encoded) and a value longer than a sized
column (``VARCHAR(n)``). Left to the database, the same message is stored on one and fails on
the other — and on PostgreSQL a refused value used to fail its whole worker batch, forever. So:

* **At the door** (:func:`nul_in_message` and :func:`mrn_too_long`, called by
  ``engine.Engine._prepare_one``): a
  message whose text holds a NUL byte, or whose MRN is longer than the ``mrn`` columns, is
  answered AE with ERR-3 102 (data type error) at the first field that holds it, and kept as a
  rejected message with its raw bytes (``messages.raw`` is bytes: it holds anything).
* **At every write** (:func:`guard`, on the shared ``metadata``): each text column's type checks
  the value it binds, on both databases, fast path (``fastsql``) or not: a NUL (from a ``\\X00\\``
  escape, a clerk's text, a quoted error) is stored as the HL7 hex escape ``\\X00\\``; a lone
  surrogate as U+FFFD; a value longer than its column raises :class:`ValueRefused` (a permanent
  error, reason ``value_refused``: the work item goes to the error queue with the column named,
  instead of PostgreSQL refusing it and SQLite keeping it).
"""

from __future__ import annotations

import re

from sqlalchemy import Column, String, Text, event
from sqlalchemy.types import TypeDecorator

from interface.hl7.errors import DATA_TYPE_ERROR, Location, PermanentError

NUL = "\x00"
NUL_ESCAPE = "\\X00\\"  # HL7's own escape for the byte (v2.5.1 2.7.4 \Xhh\)
MRN_MAX = 128  # patients.mrn, messages.patient_id, document columns: String(128)
_SURROGATE = re.compile("[\ud800-\udfff]")


class ValueRefused(PermanentError):
    """A value no database column may hold as it stands (too long for its column)."""

    def __init__(self, text: str, location: Location | None = None):
        super().__init__(text, location, DATA_TYPE_ERROR, reason="value_refused")


def clean(value: str) -> str:
    """``value`` as it will be stored: NUL as ``\\X00\\``, lone surrogates as U+FFFD."""
    if NUL in value:
        value = value.replace(NUL, NUL_ESCAPE)
    if not value.isascii() and _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
    return value


def refusal(exc: BaseException) -> ValueRefused | None:
    """The :class:`ValueRefused` behind a SQLAlchemy error (a bind processor's, wrapped in
    ``StatementError``), or one for a value PostgreSQL refused itself (``DataError``: a value too
    long, an invalid text representation); None for any other error."""
    from sqlalchemy.exc import DataError, StatementError

    orig = getattr(exc, "orig", None)
    if isinstance(orig, ValueRefused):
        return orig
    if isinstance(exc, ValueRefused):
        return exc
    if isinstance(exc, DataError) or (
        isinstance(exc, StatementError) and isinstance(orig, (ValueError, UnicodeError))
    ):
        # the database's text can quote the value: name its class only
        return ValueRefused(f"the database refused a value ({type(orig or exc).__name__})")
    return None


# -- the door --------------------------------------------------------------------------------


def nul_in_message(text: str, header) -> ValueRefused | None:
    """A NUL character anywhere in the message text: the error to answer with (ERR-3 102 at
    the first field holding one), else None. Pure; one C-speed scan of the text."""
    if NUL in text:
        return ValueRefused("a NUL character (0x00) is not allowed in HL7 text", _where(text, header))
    return None


def mrn_too_long(mrn: str | None) -> ValueRefused | None:
    """An MRN longer than the ``mrn`` columns (PID-3): the error to answer with, else None."""
    if mrn is not None and len(mrn) > MRN_MAX:
        return ValueRefused(
            f"the patient identifier is longer than {MRN_MAX} characters", Location("PID", 1, 3)
        )
    return None


def _where(text: str, header) -> Location:
    """The segment, its sequence and the field number of the first NUL."""
    fs = header.encoding.field if header is not None else "|"
    at = text.index(NUL)
    start = max(text.rfind("\r", 0, at), text.rfind("\n", 0, at)) + 1
    line = text[start:at]
    name = line[:3]
    fields = line.count(fs)
    if name in ("MSH", "FHS", "BHS"):
        fields += 1  # MSH-1 is the separator itself
    before = text[:start].replace("\r\n", "\r").replace("\n", "\r").split("\r")
    seq = 1 + sum(1 for s in before if s[:3] == name)
    return Location(name, seq, fields or None)


KEY_MAX = 300  # work_items.key, work_keys.key


def fit_key(key: str, limit: int = KEY_MAX) -> str:
    """An ordering key that fits its columns: as is, or (a message's own key built from a long
    MSH-3 and MSH-10) its head and its SHA-256 — still one key per message, the same each time."""
    if len(key) <= limit:
        return key
    import hashlib

    return key[: limit - 65] + "#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def header_clean(header):
    """The header with its text values :func:`clean` (a rejected message's header columns)."""
    if header is None:
        return None
    import dataclasses

    return dataclasses.replace(
        header,
        **{
            f.name: clean(getattr(header, f.name))
            for f in dataclasses.fields(header)
            if isinstance(getattr(header, f.name), str)
        },
    )


# -- every write -----------------------------------------------------------------------------


class Guarded(TypeDecorator):
    """A text column's type that binds :func:`clean` values and refuses over-long ones."""

    impl = String
    cache_ok = True

    def __init__(self, inner, name: str = "", check_length: bool = True):
        super().__init__()
        self.inner = inner
        self.name = name
        self.check_length = check_length
        self.impl = inner
        self.length = getattr(inner, "length", None) if check_length else None

    class comparator_factory(TypeDecorator.Comparator):
        """``col == bindparam("b")`` (the hot path's lookups) binds like a literal compared with
        the column: cleaned, never refused for its length."""

        def operate(self, op, *other, **kw):
            return super().operate(op, *(_compared(self.type, op, o) for o in other), **kw)

        def reverse_operate(self, op, other, **kw):
            return super().reverse_operate(op, _compared(self.type, op, other), **kw)

    def coerce_compared_value(self, op, value):
        """A literal compared with the column (``col == value``, ``LIKE``): cleaned, but not
        refused for its length — a lookup by an over-long value finds nothing, on both."""
        return Guarded(self.inner, self.name, False) if self.check_length else self

    def process_bind_param(self, value, dialect):
        if value.__class__ is not str:
            return value
        if NUL in value or (not value.isascii() and _SURROGATE.search(value)):
            value = clean(value)
        if self.length is not None and len(value) > self.length:
            raise ValueRefused(
                f"a value of {len(value)} characters is too long for {self.name} (at most {self.length})"
            )
        return value

    def bind_processor(self, dialect):
        """:meth:`process_bind_param` itself when the inner type has no processor of its own
        (text on SQLite and psycopg): one call per bound value instead of two — some eighty
        text binds per ADT message (issue #21)."""
        if self.impl_instance.bind_processor(dialect) is not None:
            return super().bind_processor(dialect)
        length, name = self.length, self.name

        def run(value):  # process_bind_param, inlined
            if value.__class__ is not str:
                return value
            if NUL in value or (not value.isascii() and _SURROGATE.search(value)):
                value = clean(value)
            if length is not None and len(value) > length:
                raise ValueRefused(
                    f"a value of {len(value)} characters is too long for {name} (at most {length})"
                )
            return value

        return run

    def process_result_value(self, value, dialect):
        return value

    def result_processor(self, dialect, coltype):
        """The inner type's own processor (none for text on SQLite and psycopg):
        :meth:`process_result_value` returns the value as it is, so wrapping it would only add
        a call per column read (some sixty per ADT message, issue #21)."""
        return self.impl_instance.result_processor(dialect, coltype)


def _compared(type_, op, other):
    """A typeless bind parameter (or a list of them, for IN) compared with a guarded column:
    given the column's compared-value type (no length check)."""
    from sqlalchemy.sql.elements import BindParameter

    if isinstance(other, BindParameter) and other.type._isnull and isinstance(type_, Guarded):
        return other._with_binary_element_type(type_.coerce_compared_value(op, None))
    if isinstance(other, (list, tuple)) and any(isinstance(o, BindParameter) for o in other):
        return type(other)(_compared(type_, op, o) for o in other)
    return other

    @property
    def python_type(self):
        return str


def guard(metadata) -> None:
    """Give every text column of ``metadata``'s tables the :class:`Guarded` type, for tables
    defined before and after this call (modules add their tables on import)."""
    from sqlalchemy import TEXT, VARCHAR, Unicode, UnicodeText

    plain = (String, Text, VARCHAR, TEXT, Unicode, UnicodeText)  # not Enum and other subclasses

    def wrap(column: Column, table) -> None:
        if getattr(table, "metadata", None) is metadata and type(column.type) in plain:
            column.type = Guarded(column.type, f"{table.name}.{column.name}")

    for table in metadata.tables.values():
        for column in table.columns:
            wrap(column, table)
    event.listen(Column, "after_parent_attach", wrap)
