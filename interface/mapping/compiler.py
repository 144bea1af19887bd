"""The compiler: a MappingSpec into a tree of readers and targets, and the
``tests:`` cases beside it.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, cast

from interface.config.yamlfile import Located, PathKey
from interface.hl7.errors import TABLE_VALUE_NOT_FOUND, ConfigError, HL7Error
from interface.hl7.message import parse
from interface.mapping import records, transforms
from interface.mapping.batch import _Block
from interface.mapping.codetables import CodeTable, TableSet
from interface.mapping.paths import _PARAM, Path, parse_path
from interface.mapping.reader import _Cond, _Run
from interface.mapping.spec import ExpectError, FieldSpec, MappingSpec
from interface.mapping.targets import Step, _Scalar, _Target


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list


class _Compiler:
    def __init__(self, doc: Located, spec: MappingSpec, tables: TableSet):
        self.doc = doc
        self.spec = spec
        self.tables = tables
        self.problems: list[str] = []
        self.selects: set[str] = set()  # targets of select: blocks seen so far (for skip:)

    def problem(self, where: PathKey, message: str) -> None:
        self.problems.append(f"{self.doc.file}:{self.doc.line(where)}: {message}")

    def path(self, text: Any, where: PathKey, kind: str) -> Path | None:
        try:
            p = parse_path(text)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None
        if p.segment is None and kind != "rep":
            self.problem(
                where,
                f"relative path {p.text!r} is only allowed inside each:/select: over a field's repetitions",
            )
            return None
        return p

    def fields(self, specs: list[FieldSpec], root: type, where: PathKey, kind: str) -> list[_Scalar | _Block]:
        out = []
        for i, fs in enumerate(specs):
            c = self.field(fs, root, where + (i,), kind)
            if c is not None:
                out.append(c)
        return out

    def target(self, text: str, root: type, where: PathKey) -> tuple[_Target | None, Any]:
        if "[" in text:
            self.problem(where + ("to",), f"target {text!r}: build lists with each:, not []")
            return None, None
        try:
            tp = records.target_type(root, text)
        except KeyError as exc:
            self.problem(
                where + ("to",), f"unknown target {text!r} (no field {exc.args[0]!r} in {root.__name__})"
            )
            return None, None
        parts = text.split(".")
        attrs = tuple("class_" if p == "class" else p for p in parts)
        factories = []
        for n in range(1, len(parts)):
            factories.append(records.target_type(root, ".".join(parts[:n])))
        return _Target(text, attrs, tuple(factories)), tp

    def conds(self, when: Any, where: PathKey, kind: str) -> tuple[_Cond, ...]:
        if when is None:
            return ()
        items = when if isinstance(when, list) else [when]
        out = []
        for i, w in enumerate(items):
            wh = where + ("when",) + ((i,) if isinstance(when, list) else ())
            p = self.path(w.field, wh + ("field",), kind)
            for v in [w.equals, w.not_equals, *(w.in_ or []), *(w.not_in or [])]:
                self.param_ref(v, wh)
            if p is not None:
                out.append(_Cond(p, w))
        return tuple(out)

    def param_ref(self, value: Any, where: PathKey) -> None:
        if isinstance(value, str) and value.startswith("$"):
            if not _PARAM.match(value):
                self.problem(where, f"bad parameter name {value!r}")

    def steps(self, transform: Any, where: PathKey) -> tuple[Step, ...]:
        if transform is None:
            return ()
        items = transform if isinstance(transform, list) else [transform]
        out: list[Step] = []
        for i, t in enumerate(items):
            wh = where + ("transform",) + ((i,) if isinstance(transform, list) else ())
            if isinstance(t, str):
                if t in transforms.SIMPLE:

                    def simple(v: str, run: _Run, fn: Callable[[str], str] = transforms.SIMPLE[t]) -> str:
                        return fn(v)

                    out.append(simple)
                elif t in transforms.WITH_TIME_ZONE:

                    def with_tz(
                        v: str, run: _Run, fn: Callable[[str, str], str] = transforms.WITH_TIME_ZONE[t]
                    ) -> str:
                        return fn(v, run.tz)

                    out.append(with_tz)
                else:
                    self.problem(wh, f"unknown transform {t!r} (known: {', '.join(transforms.NAMES)})")
            elif isinstance(t, dict) and list(t) == ["table"]:
                out_step = self.table_step(t["table"], wh)
                if out_step:
                    out.append(out_step)
            else:
                self.problem(wh, f"unknown transform {t!r} (a name, or {{table: NAME}})")
        return tuple(out)

    def table_step(self, name: Any, where: PathKey) -> Step | None:
        try:
            table = self.tables.get(str(name))
        except KeyError:
            self.problem(where, f"unknown table {name!r} (no file {self.tables.directory / f'{name}.yaml'})")
            return None
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

        def lookup(v: str, run: _Run, table: CodeTable = table) -> str:
            hit = table.lookup(v)
            if hit is None:
                err = transforms.BadValue(f"code not in table {table.name}")
                err.code = TABLE_VALUE_NOT_FOUND
                raise err
            return hit

        return lookup

    def field(self, fs: FieldSpec, root: type, where: PathKey, kind: str) -> _Scalar | _Block | None:
        block = fs.each is not None or fs.select is not None
        scalar_sources = [
            k
            for k, v in (("from", fs.from_), ("value", fs.value), ("mrn", fs.mrn), ("concat", fs.concat))
            if v is not None
        ]
        if block and scalar_sources:
            self.problem(
                where,
                f"{'each' if fs.each is not None else 'select'}: cannot be combined with {scalar_sources[0]}:",
            )
            return None
        if fs.each is not None and fs.select is not None:
            self.problem(where, "use either each: or select:, not both")
            return None
        target, tp = self.target(fs.to, root, where)
        if block:
            return self.block(fs, target, tp, where, kind)
        if fs.fields is not None:
            self.problem(where + ("fields",), "fields: needs each: or select:")
        for key in ("group", "skip", "append"):
            if getattr(fs, key) not in (None, False):
                self.problem(where + (key,), f"{key}: only applies to each:")
        if scalar_sources == ["from", "concat"]:
            scalar_sources = ["from"]  # concat: is the fallback when no from: path has a value
        if len(scalar_sources) != 1:
            self.problem(
                where,
                "say where the value comes from: exactly one of from:, value:, mrn:, concat:, each:, select:"
                if not scalar_sources
                else f"use only one of {', '.join(k + ':' for k in scalar_sources)}",
            )
            return None
        if tp is not None and tp is not str and tp is not Any:
            self.problem(
                where + ("to",), f"target {fs.to!r} is not a single value; use each: or select: to fill it"
            )
            target = None
        paths = mrn = concat = None
        if fs.from_ is not None:
            raw = fs.from_ if isinstance(fs.from_, list) else [fs.from_]
            paths = [
                self.path(p, where + ("from",) + ((i,) if isinstance(fs.from_, list) else ()), kind)
                for i, p in enumerate(raw)
            ]
            if not raw:
                self.problem(where + ("from",), "from: is empty")
            if any(p is None for p in paths):
                return None
        if fs.mrn is not None:
            mrn = self.path(fs.mrn, where + ("mrn",), "seg")
            if mrn is None:
                return None
            if mrn.field is None or mrn.component or mrn.filters or mrn.repetition or mrn.every:
                self.problem(
                    where + ("mrn",), f"mrn: takes a whole CX field such as PID-3 or MRG-1, not {fs.mrn!r}"
                )
                return None
        elif fs.lenient:
            self.problem(where + ("lenient",), "lenient: only applies to mrn:")
        if fs.concat is not None:
            concat = [self.path(p, where + ("concat", i), kind) for i, p in enumerate(fs.concat)]
            if any(p is None for p in concat):
                return None
        self.param_ref(fs.value, where + ("value",))
        self.param_ref(fs.default, where + ("default",))
        conds = self.conds(fs.when, where, kind)
        steps = self.steps(fs.transform, where)
        if target is None:
            return None
        return _Scalar(
            target=target,
            paths=paths,
            const=fs.value,
            mrn=mrn,
            lenient=fs.lenient,
            concat=concat,
            separator=fs.separator,
            keep_empty=fs.keep_empty,
            steps=steps,
            default=fs.default,
            required=fs.required,
            trim=self.spec.trim if fs.trim is None else fs.trim,
            conds=conds,
        )

    def block(
        self, fs: FieldSpec, target: _Target | None, tp: Any, where: PathKey, kind: str
    ) -> _Block | None:
        is_each = fs.each is not None
        key = "each" if is_each else "select"
        src = fs.each if is_each else fs.select
        raw = src if isinstance(src, list) else [src]
        for k in ("transform", "default", "trim"):
            if getattr(fs, k) is not None:
                self.problem(where + (k,), f"{k}: does not apply to a {key}: block; put it on its fields")
        if fs.required:
            self.problem(
                where + ("required",), f"required: does not apply to a {key}: block; put it on its fields"
            )
        if not is_each and (fs.group is not None or fs.skip is not None or fs.append):
            self.problem(where, "group:, skip: and append: only apply to each:")
        found = [
            self.path(p, where + (key,) + ((i,) if isinstance(src, list) else ()), kind)
            for i, p in enumerate(raw)
        ]
        if not raw:
            self.problem(where + (key,), f"{key}: is empty")
        if any(p is None for p in found):
            return None
        sources = cast("list[Path]", found)  # no None (above)
        seg_sources = [p for p in sources if p.field is None]
        if seg_sources and (len(seg_sources) != len(sources) or not is_each):
            self.problem(
                where + (key,),
                f"{key}: takes either segments (NK1, IN1) or field repetitions (PID-3[*]), not a mix"
                if is_each
                else "select: takes field repetitions such as PID-5[XPN-7=L]",
            )
            return None
        if any(p.component for p in sources):
            self.problem(where + (key,), f"{key}: takes whole repetitions (PID-5[*]), not components")
            return None
        if fs.group is not None:
            if not seg_sources:
                self.problem(where + ("group",), "group: only applies to each: over segments")
            for i, g in enumerate(fs.group):
                if not re.match(r"[A-Z][A-Z0-9]{2}\Z", str(g)):
                    self.problem(where + ("group", i), f"bad segment id {g!r}")
        if fs.fields is None:
            self.problem(where, f"{key}: needs fields:")
            return None
        item_kind = "seg" if seg_sources else "rep"
        if tp is None or target is None:
            return None
        if is_each:
            if not _is_list(tp) or not dataclasses.is_dataclass(typing.get_args(tp)[0]):
                self.problem(
                    where + ("to",), f"each: needs a list target; {fs.to!r} is not a list of records"
                )
                return None
            item_type = typing.get_args(tp)[0]
        else:
            if not dataclasses.is_dataclass(tp):
                self.problem(
                    where + ("to",),
                    f"select: needs a record target such as patient.name; {fs.to!r} is a single value",
                )
                return None
            item_type = tp
        specs = self.fields(fs.fields, item_type, where + ("fields",), item_kind)
        conds = self.conds(fs.when, where, item_kind)
        skip = fs.skip
        if skip is not None and skip not in self.selects:
            self.problem(where + ("skip",), f"skip: {skip!r} names no select: block above it")
        if not is_each:
            self.selects.add(fs.to)
        members = frozenset(fs.group) if fs.group is not None else frozenset()
        return _Block(
            target=target,
            sources=sources,
            members=members,
            skip=skip,
            select=not is_each,
            item_type=item_type,
            specs=specs,
            conds=conds,
            key=fs.to,
            append=fs.append,
        )


# ---------------------------------------------------------------------------------------------
# test cases written beside a mapping


@dataclass
class Case:
    """One ``tests:`` entry: a message, params, and the expected output or error."""

    name: str
    line: int
    text: str
    params: dict[str, Any]
    expect: Any = None
    expect_error: ExpectError | None = None


def _check_expect(value: Any, tp: Any, where: PathKey, comp: _Compiler) -> None:
    """Every key of an ``expect:`` must be a field of the record it describes."""
    tp = records._strip_optional(tp)
    if _is_list(tp):
        if isinstance(value, list):
            for i, v in enumerate(value):
                _check_expect(v, typing.get_args(tp)[0], where + (i,), comp)
        return
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        for k, v in value.items():
            name = "class_" if k == "class" else k
            if name not in hints:
                comp.problem(where + (k,), f"expect: {cast(type, tp).__name__} has no field {k!r}")
            else:
                _check_expect(v, hints[name], where + (k,), comp)


def _cases(spec: MappingSpec, comp: _Compiler, root: type) -> list[Case]:
    out = []
    names = set()
    for i, c in enumerate(spec.tests):
        where = ("tests", i)
        if c.name in names:
            comp.problem(where + ("name",), f"duplicate test name {c.name!r}")
        names.add(c.name)
        if (c.expect is None) == (c.expect_error is None):
            comp.problem(where, "a test needs exactly one of expect: or expect_error:")
        try:
            parse(c.message)
        except HL7Error as exc:
            comp.problem(where + ("message",), f"test message cannot be parsed: {exc}")
        if isinstance(c.expect, list):
            for j, e in enumerate(c.expect):
                _check_expect(e, root, where + ("expect", j), comp)
        elif c.expect is not None:
            _check_expect(c.expect, root, where + ("expect",), comp)
        out.append(Case(c.name, comp.doc.line(where), c.message, dict(c.params), c.expect, c.expect_error))
    return out


# ---------------------------------------------------------------------------------------------
# the compiled mapping
