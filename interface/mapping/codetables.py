"""Code tables: YAML files that translate a sender's codes into the values the chart keeps.

A table lives in ``mappings/tables/<name>.yaml``::

    description: HL7 table 0001 - Administrative Sex
    case_sensitive: false      # default: codes match whatever their case
    values:
      F: female
      M: male
    default: unknown           # optional: what an unlisted code becomes

Without ``default``, an unlisted code is an error (``errors.DataError``, code 103): the message
goes to the error queue and the analyst adds the code, instead of the chart silently keeping a
blank. ``default: keep`` passes unlisted codes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import field_validator

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError


class TableSpec(Strict):
    description: str = ""
    case_sensitive: bool = False
    values: dict[str, str]
    default: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _codes_as_text(cls, v: Any) -> Any:
        # YAML reads 1: x as an int key and Y: as a bool; codes are always text.
        if isinstance(v, dict):
            return {_text(k): _text(val) for k, val in v.items()}
        return v


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "Y" if v else "N"
    return v if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class CodeTable:
    name: str
    file: str
    values: dict[str, str]
    case_sensitive: bool = False
    default: str | None = None
    _folded: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, name: str, file: str, spec: TableSpec) -> "CodeTable":
        folded = {} if spec.case_sensitive else {k.upper(): v for k, v in spec.values.items()}
        return cls(name, file, dict(spec.values), spec.case_sensitive, spec.default, folded)

    def lookup(self, code: str) -> str | None:
        """The mapped value, the default for an unlisted code, or None if neither exists."""
        if self.case_sensitive:
            hit = self.values.get(code)
        else:
            hit = self._folded.get(code.upper())
        if hit is not None:
            return hit
        if self.default == "keep":
            return code
        return self.default


def load_table(path: str | Path) -> CodeTable:
    """Load one table file; ConfigError (``file:line: message``) if it is not a valid table."""
    p = Path(path)
    doc = load_yaml(p)
    spec = validate(TableSpec, doc)
    return CodeTable.build(p.stem, str(p), spec)


class TableSet:
    """The tables of one mappings directory, loaded once each, on first use."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._tables: dict[str, CodeTable] = {}

    def get(self, name: str) -> CodeTable:
        """The table ``name``; KeyError if there is no such file, ConfigError if it is invalid."""
        if name not in self._tables:
            path = self.directory / f"{name}.yaml"
            if not path.is_file() or "/" in name or "\\" in name or name.startswith("."):
                raise KeyError(name)
            self._tables[name] = load_table(path)
        return self._tables[name]

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.yaml"))


def check_table_files(directory: str | Path) -> list[str]:
    """Problems in every table file of a directory (for ``interface check``)."""
    problems: list[str] = []
    for p in sorted(Path(directory).glob("*.yaml")):
        try:
            load_table(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems
