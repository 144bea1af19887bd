"""A site's own code tables (``rules/code_tables.yaml``), merged over the HL7 tables of
:mod:`interface.rules.hl7_tables`: what the message viewer shows beside a coded value.

The file (optional; every problem reported as ``file:line: message`` and checked by
``interface check``)::

    version: 1
    tables:
      "0069":                      # quote the number: YAML reads 0069 as text but 0001 as 1
        name: Hospital Service     # optional for a standard table (its name is known)
        values:
          CAR: Cardiac service
          MED: Medical service
      "0004":
        values:
          K: Day case              # a local value added to a standard table (or one re-worded)
      ZL01:                        # a local table of the site's own
        name: Ward kind
        values: {A: Acute, R: Rehabilitation}
    fields:
      PV1-10: "0069"               # the field (SEG-n) or component (SEG-n.c) a table codes
      ZPV-2: ZL01

Values are merged per table (the file's win); a field named in ``fields`` takes its table from
the file. Pure but for reading the file (:func:`load_site_tables`, :func:`default_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal, Mapping

from pydantic import Field, field_validator

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError
from interface.rules import hl7_tables

DEFAULT_FILE = Path("rules/code_tables.yaml")
TABLE_ID = r"^(?:[0-9]{4}|[A-Z][A-Z0-9_]{1,15})$"
FIELD_ID = r"^[A-Z][A-Z0-9]{2}-[1-9][0-9]{0,2}(?:\.[1-9][0-9]?)?$"


class SiteTable(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    values: dict[str, str] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _values(cls, values: dict[str, str]) -> dict[str, str]:
        out = {}
        for code, meaning in values.items():
            code, meaning = str(code).strip(), str(meaning).strip()
            if not code or not meaning:
                raise ValueError("an empty code or meaning")
            out[code] = meaning
        return out


class SiteTables(Strict):
    version: Literal[1] = 1
    tables: dict[str, SiteTable] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("tables")
    @classmethod
    def _table_ids(cls, tables: dict[str, SiteTable]) -> dict[str, SiteTable]:
        import re

        for tid, table in tables.items():
            if not re.match(TABLE_ID, tid):
                raise ValueError(f"table {tid!r}: a number of four digits (quoted) or a local name (ZL01)")
            if table.name is None and tid not in hl7_tables.NAMES:
                raise ValueError(f"table {tid!r} is not a standard table known here: give it a name")
        return tables

    @field_validator("fields")
    @classmethod
    def _field_ids(cls, fields: dict[str, str]) -> dict[str, str]:
        import re

        for where, tid in fields.items():
            if not re.match(FIELD_ID, where):
                raise ValueError(f"field {where!r}: write SEG-n or SEG-n.c (PV1-10, MSH-9.2)")
            if not re.match(TABLE_ID, str(tid)):
                raise ValueError(f"field {where!r}: table {tid!r} is not a table number or name")
        return fields


@dataclass(frozen=True)
class CodeTables:
    """The tables the viewer reads: values per table, table names, field -> table."""

    tables: Mapping[str, Mapping[str, str]]
    names: Mapping[str, str]
    fields: Mapping[str, str]


BUILTIN = CodeTables(hl7_tables.TABLES, hl7_tables.NAMES, hl7_tables.FIELDS)


def merged(site: SiteTables | None) -> CodeTables:
    """The HL7 tables with the site's values, tables and fields over them."""
    if site is None:
        return BUILTIN
    tables = {k: dict(v) for k, v in hl7_tables.TABLES.items()}
    names = dict(hl7_tables.NAMES)
    for tid, t in site.tables.items():
        tables.setdefault(tid, {}).update(t.values)
        if t.name:
            names[tid] = t.name
    fields = {**hl7_tables.FIELDS, **site.fields}
    return CodeTables(tables, names, fields)


def load_site_tables(path: str | Path) -> SiteTables:
    """Load and validate a site's file; ConfigError lists every problem as ``file:line: message``.
    A field naming a table that neither the file nor the HL7 tables hold is a problem too."""
    doc = load_yaml(path)
    site = validate(SiteTables, doc)
    known = set(hl7_tables.TABLES) | set(site.tables)
    missing = [
        f"{doc.where(('fields', where))}: field {where} names table {tid!r}, which has no values here"
        for where, tid in site.fields.items()
        if tid not in known
    ]
    if missing:
        raise ConfigError(missing)
    return site


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> CodeTables:
    return merged(load_site_tables(path))


def default_tables(path: str | Path | None = DEFAULT_FILE) -> CodeTables:
    """The site's file merged over the HL7 tables if it exists (re-read when it changes), else
    the HL7 tables alone."""
    if path is not None and Path(path).is_file():
        return _cached(str(path), Path(path).stat().st_mtime_ns)
    return BUILTIN


def is_tables_file(path: str | Path) -> bool:
    return Path(path).name.startswith("code_tables")


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    """Every problem in these files (``file:line: message``); empty when all are valid."""
    problems: list[str] = []
    for p in paths:
        try:
            load_site_tables(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems
