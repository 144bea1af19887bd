"""The mapping language: YAML mappings compiled once, at load time, into a small interpreter.

A mapping (``mappings/*.yaml``) says, field by field, where each value of a record
(``records.ChartUpdate`` or ``records.Document``) comes from in an HL7 v2 message. The schema is
written once, as the pydantic models below; :func:`load_mapping` validates a file against them,
then checks every path, target, transform, table and test case, and reports *every* problem as
``file:line: message`` in one :class:`errors.ConfigError`. Nothing in a mapping is code: paths
are parsed here, transforms are looked up by name, and nothing is ever evaluated.

The language reference for analysts is ``docs/mappings.md``. In short::

    name: adt
    root: chart                    # chart -> records.ChartUpdate, document -> records.Document
    records: {each: PID}           # optional: one record per PID group (A17 swaps give two)
    fields:
      - to: event
        from: [MSH-9.2, EVN-1]     # the first path that has a value wins
        required: true
      - to: mrn
        mrn: PID-3                 # the channel's MRN rule (identity.pick_mrn)
        required: true
      - to: patient.birth_date
        from: PID-7
        transform: date
      - to: patient.identifiers    # a list: one item per repetition
        each: PID-3[*]
        fields:
          - {to: value, from: .1}
          - {to: authority, from: .4.1}

Values follow ``records``: an empty field gives ``None`` (no change), the HL7 null ``""`` gives
``records.CLEAR``. A missing ``required`` value raises ``errors.RequiredFieldMissing`` and a value
that cannot be transformed raises ``errors.DataError``, both with the field's ``Location``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path as FilePath
from typing import Any

from interface.config.yamlfile import load_yaml, validate
from interface.hl7.errors import ConfigError
from interface.hl7.message import Message
from interface.mapping import records, transforms
from interface.mapping.batch import _Block, _plan
from interface.mapping.codetables import TableSet
from interface.mapping.compiler import Case, _cases, _Compiler
from interface.mapping.paths import parse_path
from interface.mapping.reader import _Ctx, _index, _Run, _segment_groups, _segment_groups_slow
from interface.mapping.spec import MappingSpec
from interface.mapping.targets import _Scalar


class Mapping:
    """A compiled mapping. ``apply`` is pure: message and params in, records out."""

    paths_digest = ""  # of the data whose HL7 paths were judged sound (paths_digest()), when loaded

    def __init__(
        self,
        name: str,
        root: str,
        file: str,
        description: str,
        specs: list[_Scalar | _Block],
        records_each: str | None,
        defaults: dict[str, Any],
        tests: list[Case],
        messages: list[str],
    ):
        self.name = name
        self.root = root
        self.file = file
        self.description = description
        self.record_type = records.RECORD_ROOTS[root]
        self.messages = messages
        self.tests = tests
        self._specs = specs
        self._plan = _plan(specs)
        self._records_each = records_each
        self._defaults = defaults

    def __repr__(self) -> str:
        return f"Mapping({self.name!r}, root={self.root!r}, file={self.file!r})"

    def apply(self, message: Message, params: dict[str, Any] | None = None) -> list[Any]:
        """The records this message makes: ``list[ChartUpdate]`` or ``list[Document]``.

        ``params``: ``authority`` and ``id_types`` (the channel's MRN rule), ``timezone`` (IANA
        name for times without offset; default UTC) and any analyst ``$name`` params; they
        override the mapping's own ``params:`` defaults. Raises ``RequiredFieldMissing`` /
        ``DataError`` with the location of the offending field.
        """
        return self._records(message, params, reference=False)

    def apply_reference(self, message: Message, params: dict[str, Any] | None = None) -> list[Any]:
        """``apply`` by the reference interpreter: every field read and located one by one, as
        written. Slow; the fast paths of ``apply`` (compiled readers, batches) must give exactly
        this (tests/test_mapping_speed_equivalence.py)."""
        return self._records(message, params, reference=True)

    def _records(self, message: Message, params: dict[str, Any] | None, reference: bool) -> list[Any]:
        p = dict(self._defaults)
        if params:
            p.update(params)
        run = _Run(message, p)
        order = message.segments
        top = _Ctx(_index(order), order)
        ctxs = [top]
        if self._records_each:
            groups = _segment_groups_slow if reference else _segment_groups
            ctxs = groups(top, self._records_each, None) or [top]
        out = []
        make = self.record_type
        for ctx in ctxs:
            run.chosen = {}
            obj = make(event=None)
            if reference:
                for spec in self._specs:
                    spec.run_slow(run, ctx, obj)
            else:
                for planned in self._plan:
                    planned.run(run, ctx, obj)
            out.append(obj)
        return out


def paths_digest(data: Any) -> str:
    """The digest of a mapping file's parsed YAML: the HL7 path check (``hl7paths.check``) is a
    function of it, so a load may skip that check for data another process already checked
    (``load_mappings(checked=...)``)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load(
    path: str | FilePath, tables: TableSet | None = None, checked: frozenset[str] = frozenset()
) -> Mapping:
    p = FilePath(path)
    doc = load_yaml(p)
    if not isinstance(doc.data, dict):
        raise ConfigError(
            [f"{doc.file}:{doc.line(())}: a mapping is a YAML mapping with name:, root: and fields:"]
        )
    spec = validate(MappingSpec, doc)
    tables = tables or TableSet(p.parent / "tables")
    comp = _Compiler(doc, spec, tables)
    root = records.RECORD_ROOTS[spec.root]
    if spec.records is not None:
        try:
            rp = parse_path(spec.records.each)
            if rp.field is not None:
                raise ValueError(f"records: each: takes a segment id such as PID, not {spec.records.each!r}")
        except ValueError as exc:
            comp.problem(("records", "each"), str(exc))
    for k, v in spec.params.items():
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", str(k)):
            comp.problem(("params", k), f"bad parameter name {k!r}")
    tz = spec.params.get("timezone")
    if tz is not None and not transforms.is_time_zone(str(tz)):
        comp.problem(("params", "timezone"), f"unknown time zone {tz!r}")
    specs = comp.fields(spec.fields, root, ("fields",), "seg")
    cases = _cases(spec, comp, root)
    digest = paths_digest(doc.data)
    if digest not in checked:  # hl7apy's definitions: ~7 MB a process for the shipped mappings
        from interface.mapping.hl7paths import (
            check as check_hl7,  # every path against the version's definitions
        )

        comp.problems.extend(q for q in check_hl7(doc, spec) if q not in comp.problems)
    if comp.problems:
        raise ConfigError(comp.problems)
    mapping = Mapping(
        spec.name,
        spec.root,
        str(p),
        spec.description,
        specs,
        spec.records.each if spec.records else None,
        dict(spec.params),
        cases,
        list(spec.messages),
    )
    mapping.paths_digest = digest
    return mapping


def load_mapping(path: str | FilePath) -> Mapping:
    """Load and compile one mapping file. ConfigError lists every problem as ``file:line: message``."""
    return _load(path)


def mapping_files(directory: str | FilePath) -> list[FilePath]:
    """The mapping files of a directory (``*.yaml`` directly in it; ``tables/`` holds code tables)."""
    d = FilePath(directory)
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_mappings(directory: str | FilePath, checked: frozenset[str] = frozenset()) -> dict[str, Mapping]:
    """Every mapping in a directory, by name. ConfigError lists every problem of every file.

    ``checked``: :func:`paths_digest` of mapping data whose HL7 paths another process found
    sound (a ``--workers`` child: the supervisor's check, ``interface.ops.config_check``); the
    path check is skipped for those, and only those."""
    d = FilePath(directory)
    problems: list[str] = []
    out: dict[str, Mapping] = {}
    if not d.is_dir():
        raise ConfigError([f"{d}:1: not a directory"])
    tables = TableSet(d / "tables")
    for f in mapping_files(d):
        try:
            m = _load(f, tables, checked)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if m.name in out:
            problems.append(f"{f}:1: mapping name {m.name!r} is already used by {out[m.name].file}")
            continue
        out[m.name] = m
    if problems:
        raise ConfigError(problems)
    return out


def check_paths(paths: list[str]) -> list[str]:
    """Problems (``file:line: message``) in mapping files or directories of mappings, for
    ``interface check``. A directory is checked with its ``tables/``."""
    problems: list[str] = []
    for path in paths:
        p = FilePath(path)
        try:
            if p.is_dir():
                load_mappings(p)
                if (p / "tables").is_dir():
                    from interface.mapping.codetables import check_table_files

                    problems.extend(q for q in check_table_files(p / "tables") if q not in problems)
            elif p.is_file():
                load_mapping(p)
            else:
                problems.append(f"{p}:1: no such file or directory")
        except ConfigError as exc:
            problems.extend(q for q in exc.problems if q not in problems)
    return problems
