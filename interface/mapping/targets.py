"""Targets: where a read value goes in the records, with its transforms, and
the required / null rules.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, cast

from interface.hl7.errors import DataError, Location, RequiredFieldMissing
from interface.hl7.identity import MrnRule, pick_mrn, split_cx
from interface.hl7.message import Encoding
from interface.mapping import records, transforms
from interface.mapping.paths import Path
from interface.mapping.reader import (
    Reader,
    _all_hold,
    _all_hold_slow,
    _all_reader,
    _Cond,
    _Ctx,
    _read,
    _read_all,
    _reader,
    _Run,
    _where,
)
from interface.mapping.spec import NULL


class _Target:
    """A dotted target compiled to attribute names plus factories for objects made on the way."""

    __slots__ = ("text", "attrs", "factories", "setter")

    def __init__(self, text: str, attrs: tuple[str, ...], factories: tuple[Callable[[], Any], ...]):
        self.text = text
        self.attrs = attrs
        self.factories = factories
        self.setter = self._compile()

    def _compile(self) -> Callable[[Any, Any], None]:
        """``set`` specialised for one or two attribute names (most targets)."""
        attrs, factories = self.attrs, self.factories
        if len(attrs) == 1:
            name = attrs[0]
            return lambda obj, value: setattr(obj, name, value)
        if len(attrs) == 2:
            outer, name = attrs
            make = factories[0]

            def set2(obj: Any, value: Any) -> None:
                nxt = getattr(obj, outer)
                if nxt is None:
                    nxt = make()
                    setattr(obj, outer, nxt)
                setattr(nxt, name, value)

            return set2
        return self.set

    def set(self, obj: Any, value: Any) -> None:
        for a, make in zip(self.attrs, self.factories):
            nxt = getattr(obj, a)
            if nxt is None:
                nxt = make()
                setattr(obj, a, nxt)
            obj = nxt
        setattr(obj, self.attrs[-1], value)

    def get(self, obj: Any) -> Any:
        for a in self.attrs:
            obj = getattr(obj, a, None)
            if obj is None:
                return None
        return obj


Step = Callable[[str, _Run], str]


class _Scalar:
    """A value: the first of ``from`` paths (or value / mrn / concat), defaulted, transformed.

    ``run`` is a closure compiled once (``_compile``); ``run_slow`` is the reference
    interpretation, which also gives the Location an error reports.
    """

    _FIELDS = (
        "target",
        "paths",
        "const",
        "mrn",
        "lenient",
        "concat",
        "separator",
        "keep_empty",
        "steps",
        "default",
        "required",
        "trim",
        "conds",
    )
    __slots__ = _FIELDS + ("run",)
    target: _Target
    paths: list[Path] | None
    const: str | None
    mrn: Path | None
    lenient: bool
    concat: list[Path] | None
    separator: str
    keep_empty: bool
    steps: tuple[Step, ...]
    default: str | None
    required: bool
    trim: bool
    conds: tuple[_Cond, ...]
    run: Callable[[_Run, _Ctx, Any], bool]

    def __init__(self, **kw: Any) -> None:
        for k in self._FIELDS:
            setattr(self, k, kw.get(k))
        self.run = self._compile()

    def _compile(self) -> Callable[[_Run, _Ctx, Any], bool]:
        value_of = self._fast_value()
        conds = self.conds or ()
        default = self.default
        steps = self.steps or ()
        required = self.required
        setter = self.target.setter
        CLEAR = records.CLEAR
        BadValue = transforms.BadValue
        all_hold = _all_hold
        slow = self.run_slow

        if not conds and default is None and not required:
            attrs = self.target.attrs
            if not steps:
                if len(attrs) == 1:
                    name = attrs[0]

                    def run_plain1(run: _Run, ctx: _Ctx, obj: Any) -> bool:
                        value = value_of(run, ctx)
                        if value is None:
                            return False
                        setattr(obj, name, value)
                        return True

                    return run_plain1

                def run_plain(run: _Run, ctx: _Ctx, obj: Any) -> bool:
                    value = value_of(run, ctx)
                    if value is None:
                        return False
                    setter(obj, value)
                    return True

                return run_plain

            def run_steps(run: _Run, ctx: _Ctx, obj: Any) -> bool:
                value = value_of(run, ctx)
                if value is None:
                    return False
                if value is not CLEAR:
                    v = value
                    try:
                        for step in steps:
                            v = step(v, run)
                    except BadValue:
                        return slow(run, ctx, obj)  # raises DataError with its Location
                    value = v
                setter(obj, value)
                return True

            return run_steps

        def run_scalar(run: _Run, ctx: _Ctx, obj: Any) -> bool:
            if conds and not all_hold(conds, run, ctx):
                return False
            value = value_of(run, ctx)
            if value is None and default is not None:
                value = run.param(default)
            if value is None or value is CLEAR:
                if required:
                    return slow(run, ctx, obj)  # raises RequiredFieldMissing with its Location
                if value is None:
                    return False
            elif steps:
                v = value
                try:
                    for step in steps:
                        v = step(v, run)
                except BadValue:
                    return slow(run, ctx, obj)  # raises DataError with its Location
                value = v
            setter(obj, value)
            return True

        return run_scalar

    def _fast_value(self) -> Reader:
        """A closure giving what ``_value(run, ctx)[0]`` gives."""
        trim = self.trim
        tail: Reader | None = None  # what follows when no from: path has a value
        if self.mrn is not None:
            tail = self._mrn_value
        elif self.concat is not None:
            tail = self._fast_concat()
        if self.paths is not None:
            readers = tuple(_reader(p, trim) for p in self.paths)
            if tail is None:
                if len(readers) == 1:
                    return readers[0]

                def first_of(run: _Run, ctx: _Ctx) -> Any:
                    for r in readers:
                        v = r(run, ctx)
                        if v is not None:
                            return v
                    return None

                return first_of

            def first_or_tail(run: _Run, ctx: _Ctx) -> Any:
                for r in readers:
                    v = r(run, ctx)
                    if v is not None:
                        return v
                return tail(run, ctx)

            return first_or_tail
        if tail is not None:
            return tail
        const = self.const
        assert const is not None  # value: is the one source left (the compiler checks)
        return lambda run, ctx: run.param(const)

    def _mrn_value(self, run: _Run, ctx: _Ctx) -> Any:
        p = cast(Path, self.mrn)  # the tail of an mrn: scalar; a whole field (the compiler checks)
        segs = ctx.segs.get(cast(str, p.segment))
        if not segs:
            return None
        raw = segs[0].raw(cast(int, p.field))
        if raw == NULL:
            return records.CLEAR
        if not raw:
            return None
        value = pick_mrn(raw, run.enc, run.rule)
        if value is None and self.lenient:
            value = _pick_lenient(raw, run.enc, run.rule)
        return value

    def _fast_concat(self) -> Reader:
        paths = self.concat
        assert paths is not None  # _fast_value compiles a concat: tail only
        readers = tuple(_all_reader(p, self.trim) for p in paths)
        keep_empty = self.keep_empty
        sep = self.separator
        CLEAR = records.CLEAR

        def concat(run: _Run, ctx: _Ctx) -> Any:
            parts: list[str] = []
            nulls = 0
            for r in readers:
                for v in r(run, ctx):
                    if v is None or v is CLEAR:
                        if v is not None:
                            nulls += 1
                        if keep_empty:
                            parts.append("")
                        continue
                    parts.append(v)
            while parts and parts[-1] == "":
                parts.pop()
            if not parts:
                return CLEAR if nulls else None
            return sep.join(parts)

        return concat

    def run_slow(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        if self.conds and not _all_hold_slow(self.conds, run, ctx):
            return False
        value, loc = self._value(run, ctx)
        if value is None and self.default is not None:
            value = run.param(self.default)
        if value is None or value is records.CLEAR:
            if self.required:
                first = self.paths[0] if self.paths else self.concat[0] if self.concat else self.mrn
                where = loc or (_where(first, ctx) if first else None)
                raise RequiredFieldMissing(f"{self.target.text}: required value missing", where)
            if value is None:
                return False
        elif self.steps:
            for step in self.steps:
                try:
                    value = step(value, run)
                except transforms.BadValue as exc:
                    raise DataError(
                        f"{self.target.text}: {exc}", loc, code=getattr(exc, "code", None)
                    ) from None
        self.target.set(obj, value)
        return True

    def _value(self, run: _Run, ctx: _Ctx) -> tuple[Any, Location | None]:
        if self.paths is not None:
            for p in self.paths:
                v, lo, _ = _read(run, ctx, p, self.trim)
                if v is not None:
                    return v, lo
            if self.concat is None:
                return None, None
        if self.mrn is not None:
            return self._mrn(run, ctx)
        if self.concat is not None:
            return self._concat(run, ctx)
        return run.param(cast(str, self.const)), None  # value: (the compiler checks)

    def _mrn(self, run: _Run, ctx: _Ctx) -> tuple[Any, Location | None]:
        p = cast(Path, self.mrn)  # _value calls this for an mrn: scalar; a whole field
        segs = ctx.segs.get(cast(str, p.segment))
        if not segs:
            return None, None
        seg = segs[0]
        raw = seg.raw(cast(int, p.field))
        loc = p.location(seg)
        if raw == NULL:
            return records.CLEAR, loc
        if not raw:
            return None, loc
        value = pick_mrn(raw, run.enc, run.rule)
        if value is None and self.lenient:
            value = _pick_lenient(raw, run.enc, run.rule)
        return value, loc

    def _concat(self, run: _Run, ctx: _Ctx) -> tuple[Any, Location | None]:
        parts: list[str] = []
        loc = None
        nulls = 0
        for p in cast("list[Path]", self.concat):  # _value calls this for a concat: scalar
            values: Sequence[tuple[Any, Location | None]] = _read_all(run, ctx, p, self.trim)
            for v, lo in values or [(None, None)]:
                if v is records.CLEAR:
                    nulls += 1
                    v = None
                if v is None:
                    if self.keep_empty:
                        parts.append("")
                    continue
                loc = loc or lo
                parts.append(v)
        while parts and parts[-1] == "":
            parts.pop()
        if not parts:
            return (records.CLEAR if nulls else None), loc
        return self.separator.join(parts), loc


def _pick_lenient(raw: str, enc: Encoding, rule: MrnRule) -> str | None:
    """Old senders leave CX-4 and/or CX-5 empty (``MRG|456``, ``MRG|40800000^^^MRENTR``): accept the
    first repetition whose *missing* qualifiers do not contradict the rule; one qualified with
    another authority or type is never taken."""
    reps = raw.split(enc.repetition) if enc.repetition else [raw]
    for rep in reps:
        value, authority, id_type = split_cx(rep, enc)
        if not value:
            continue
        if rule.authority and authority and authority.upper() != rule.authority.upper():
            continue
        if rule.types and id_type and id_type.upper() not in rule.types:
            continue
        return value
    return None
