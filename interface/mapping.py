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

import dataclasses
import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Any, Callable, Literal, Union

from pydantic import Field, field_validator

from . import records, transforms
from .codetables import TableSet
from .config import Located, Strict, load_yaml, validate
from .errors import (TABLE_VALUE_NOT_FOUND, ConfigError, DataError, HL7Error, Location,
                     RequiredFieldMissing)
from .identity import MrnRule, pick_mrn, split_cx
from .message import Encoding, Message, Segment, parse, unescape

NULL = '""'  # the HL7 null: "clear the stored value"

# ---------------------------------------------------------------------------------------------
# the schema (one spec: loading, linting, docs and the JSON Schema for editors)


_FLOAT_HINT = ("write relative paths in quotes, e.g. \".1\": YAML reads an unquoted .1 as the "
               "number 0.1")


def _no_numbers(v: Any) -> Any:
    """Relative paths like ``.1`` must be quoted; catch the number YAML made of them, loudly."""
    items = v if isinstance(v, list) else [v]
    if any(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        raise ValueError(_FLOAT_HINT)
    return v


class When(Strict):
    """A condition on one value. ``""`` (the HL7 null) and an empty field are both "not present"."""

    field: str
    present: bool | None = None
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None

    _field_text = field_validator("field", mode="before")(lambda cls, v: _no_numbers(v))


TransformStep = Union[str, dict[str, str]]


class FieldSpec(Strict):
    """One entry of ``fields:``: a scalar value, or a block (``each`` / ``select``) with ``fields``."""

    to: str
    # scalar sources (exactly one of from / value / mrn / concat, or a block below)
    from_: str | list[str] | None = Field(default=None, alias="from")
    value: str | None = None
    mrn: str | None = None
    lenient: bool = False
    concat: list[str] | None = None
    separator: str = " "
    keep_empty: bool = False
    transform: TransformStep | list[TransformStep] | None = None
    default: str | None = None
    required: bool = False
    trim: bool | None = None
    when: When | list[When] | None = None
    # blocks
    each: str | list[str] | None = None
    group: list[str] | None = None
    skip: str | None = None
    append: bool = False
    select: str | list[str] | None = None
    fields: list["FieldSpec"] | None = None
    nonstandard: bool = False  # its paths read past the standard on purpose (a known sender habit)

    _paths_text = field_validator("from_", "concat", "each", "select", "mrn", mode="before")(
        lambda cls, v: _no_numbers(v))


class RecordsSpec(Strict):
    each: str


class ExpectError(Strict):
    code: str | None = None
    location: str | None = None
    reason: str | None = None
    text: str | None = None


class CaseSpec(Strict):
    name: str
    message: str
    params: dict[str, Any] = {}
    expect: dict[str, Any] | list[dict[str, Any]] | None = None
    expect_error: ExpectError | None = None


def _version_str(v: Any) -> Any:
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class MappingSpec(Strict):
    name: str
    root: Literal["chart", "document"]
    version: str | list[str] = Field("2.5.1", description="the HL7 version(s) whose segment and "
                                     "data-type definitions judge the paths (interface.mapping_hl7)")
    description: str = ""
    messages: list[str] = []
    params: dict[str, Any] = {}
    trim: bool = True
    records: RecordsSpec | None = None
    fields: list[FieldSpec]
    tests: list[CaseSpec] = []

    _version_text = field_validator("version", mode="before")(  # YAML reads 2.5 as a number
        lambda cls, v: [_version_str(x) for x in v] if isinstance(v, list) else _version_str(v))


FieldSpec.model_rebuild()


def json_schema() -> dict:
    """The JSON Schema of a mapping file, for editors (``interface schema``)."""
    return MappingSpec.model_json_schema(by_alias=True)


# ---------------------------------------------------------------------------------------------
# paths

_PATH = re.compile(
    r"(?P<seg>[A-Z][A-Z0-9]{2})(?:-(?P<field>\d+)(?:\[(?P<filter>[^\]]*)\])?"
    r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?)?\Z")
_RELATIVE = re.compile(r"\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?\Z")
_CONDITION = re.compile(
    r"\s*(?:[A-Z]{2,3}-)?(?P<comp>\d+)(?:\.(?P<sub>\d+))?\s*(?P<op>!=|=)\s*(?P<value>[^,]*?)\s*\Z")
_PARAM = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled field path. ``segment`` None: relative to the current repetition (``.1.2``)."""

    text: str
    segment: str | None
    field: int | None = None  # None: the segment itself
    repetition: int | None = None  # [n]
    every: bool = False  # [*]
    filters: tuple[tuple[int, int, bool, str], ...] = ()  # (component, subcomponent, negate, value)
    component: int | None = None
    subcomponent: int | None = None

    @property
    def literal(self) -> bool:
        """MSH-1 and MSH-2 are the delimiters themselves: never split or unescaped."""
        return self.segment == "MSH" and self.field in (1, 2)

    def location(self, seg: Segment | None, repetition: int | None = None) -> Location:
        return Location(self.segment or "", seg.sequence if seg is not None else 1, self.field,
                        repetition, self.component, self.subcomponent)


def parse_path(text: str) -> Path:
    """Parse ``PID-3[CX-4=HOSP, CX-5=MR].1``, ``PID-5[*]``, ``PID-5[2].1.2``, ``.4.1`` or ``MRG``.

    Raises ValueError with a message for analysts.
    """
    if not isinstance(text, str):
        raise ValueError(f"a path must be text, not {type(text).__name__}")
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        comp, sub = int(m["comp"]), m["sub"]
        if comp < 1 or (sub is not None and int(sub) < 1):
            raise ValueError(f"bad path {text!r}: positions start at 1")
        return Path(t, None, component=comp, subcomponent=int(sub) if sub else None)
    m = _PATH.match(t)
    if not m:
        raise ValueError(f"bad path {text!r} (expected e.g. PID-5.1, PID-3[CX-5=MR].1, PID-3[*], .1)")
    nums = [int(m[k]) if m[k] else None for k in ("field", "comp", "sub")]
    if any(n is not None and n < 1 for n in nums):
        raise ValueError(f"bad path {text!r}: positions start at 1")
    fieldno, comp, sub = nums
    rep, every, filters = None, False, []
    flt = m["filter"]
    if flt is not None:
        flt = flt.strip()
        if flt == "*":
            every = True
        elif flt.isdigit():
            rep = int(flt)
            if rep < 1:
                raise ValueError(f"bad path {text!r}: repetitions start at 1")
        else:
            for part in flt.split(","):
                c = _CONDITION.match(part)
                if not c:
                    raise ValueError(f"bad filter [{flt}] in {text!r} (expected e.g. [CX-5=MR, CX-4=$authority])")
                value = c["value"]
                if value.startswith("$") and not _PARAM.match(value):
                    raise ValueError(f"bad parameter name {value!r} in {text!r}")
                filters.append((int(c["comp"]), int(c["sub"] or 1), c["op"] == "!=", value))
    if m["seg"] == "MSH" and fieldno in (1, 2) and comp:
        raise ValueError(f"bad path {text!r}: MSH-1 and MSH-2 have no components")
    return Path(t, m["seg"], fieldno, rep, every, tuple(filters), comp, sub)


def _component(raw: str, comp: int | None, sub: int | None, enc: Encoding) -> str:
    """Component/subcomponent of one raw repetition (still escaped). Unnamed positions are 1."""
    if raw == NULL:
        return NULL  # a null field clears every component of it
    comp = comp or 1
    cs = enc.component
    if cs and cs in raw:
        parts = raw.split(cs)
        raw = parts[comp - 1] if comp <= len(parts) else ""
    elif comp != 1:
        return ""
    if not raw or raw == NULL:
        return raw
    sub = sub or 1
    ss = enc.subcomponent
    if ss and ss in raw:
        parts = raw.split(ss)
        return parts[sub - 1] if sub <= len(parts) else ""
    return raw if sub == 1 else ""


# ---------------------------------------------------------------------------------------------
# runtime: contexts


class _Run:
    """The state of one ``apply``: the message, the params and what ``select`` blocks chose."""

    __slots__ = ("message", "enc", "params", "rule", "tz", "chosen", "rs", "cs", "ss", "esc")

    def __init__(self, message: Message, params: dict):
        self.message = message
        enc = self.enc = message.encoding
        self.rs = enc.repetition
        self.cs = enc.component
        self.ss = enc.subcomponent
        self.esc = enc.escape
        self.params = params
        self.rule = _rule(params.get("authority"), _types(params.get("id_types")))
        self.tz = params.get("timezone") or "UTC"
        self.chosen: dict[str, tuple] = {}

    def param(self, value: str) -> Any:
        return self.params.get(value[1:]) if value.startswith("$") else value


def _types(value: Any) -> tuple[str, ...]:
    if type(value) is tuple and all(type(v) is str for v in value):
        return _types_cached(value)  # the channel's id_types: the same tuple every message
    return _types_of(value)


@lru_cache(maxsize=256)
def _rule(authority: str | None, types: tuple[str, ...]) -> MrnRule:
    return MrnRule(authority or None, types)


def _types_of(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(str(v).strip().upper() for v in value)


_types_cached = lru_cache(maxsize=256)(_types_of)


class _Ctx:
    """Where paths are read: the segments in view, and the current repetition inside a block."""

    __slots__ = ("segs", "order", "rep", "rep_seg", "rep_field", "rep_index")

    def __init__(self, segs: dict[str, list[Segment]], order: list[Segment], rep: str | None = None,
                 rep_seg: Segment | None = None, rep_field: int | None = None,
                 rep_index: int | None = None):
        self.segs = segs
        self.order = order
        self.rep = rep
        self.rep_seg = rep_seg
        self.rep_field = rep_field
        self.rep_index = rep_index


def _index(segments: list[Segment]) -> dict[str, list[Segment]]:
    out: dict[str, list[Segment]] = {}
    for s in segments:
        lst = out.get(s.name)
        if lst is None:
            out[s.name] = [s]
        else:
            lst.append(s)
    return out


def _segment_groups(ctx: _Ctx, anchor: str, members: frozenset[str] | None) -> list[_Ctx]:
    """One context per occurrence of ``anchor``: the anchor, the member segments that follow it
    (``members`` None: everything up to the next anchor), and whatever the parent sees that no
    sibling group claimed (MSH, EVN, PID for an IN1 group...)."""
    if anchor not in ctx.segs:  # every segment of ctx.order is in ctx.segs: no group can start
        return []
    groups: list[list[Segment]] = []
    current: list[Segment] | None = None
    for seg in ctx.order:
        name = seg.name
        if name == anchor:
            current = [seg]
            groups.append(current)
        elif current is not None and (members is None or name in members
                                      or (members and name[:1] == "Z")):
            current.append(seg)
        else:
            current = None
    if not groups:
        return []
    if len(groups) == 1:
        # One group claims its segments; every name it holds is replaced by the group's own
        # below, so the unclaimed rest of the parent's view is the parent's view itself.
        segs = dict(ctx.segs)
        segs.update(_index(groups[0]))
        return [_Ctx(segs, groups[0])]
    claimed = {id(s) for g in groups for s in g}
    claimed_names = {s.name for g in groups for s in g}
    outside = {}
    for name, lst in ctx.segs.items():
        if name in claimed_names:
            lst = [s for s in lst if id(s) not in claimed]
            if not lst:
                continue
        outside[name] = lst
    out = []
    for g in groups:
        segs = dict(outside)
        segs.update(_index(g))
        out.append(_Ctx(segs, g))
    return out


def _segment_groups_slow(ctx: _Ctx, anchor: str, members: frozenset[str] | None) -> list[_Ctx]:
    """One context per occurrence of ``anchor``: the anchor, the member segments that follow it
    (``members`` None: everything up to the next anchor), and whatever the parent sees that no
    sibling group claimed (MSH, EVN, PID for an IN1 group...). The reference for
    :func:`_segment_groups`."""
    groups: list[list[Segment]] = []
    current: list[Segment] | None = None
    for seg in ctx.order:
        name = seg.name
        if name == anchor:
            current = [seg]
            groups.append(current)
        elif current is not None and (members is None or name in members
                                      or (members and name[:1] == "Z")):
            current.append(seg)
        else:
            current = None
    if not groups:
        return []
    claimed = {id(s) for g in groups for s in g}
    claimed_names = {s.name for g in groups for s in g}
    outside = {}
    for name, lst in ctx.segs.items():
        if name in claimed_names:
            lst = [s for s in lst if id(s) not in claimed]
            if not lst:
                continue
        outside[name] = lst
    out = []
    for g in groups:
        segs = dict(outside)
        segs.update(_index(g))
        out.append(_Ctx(segs, g))
    return out


def _repetitions(run: _Run, ctx: _Ctx, path: Path) -> tuple[list[tuple[str, Segment | None, int | None]], Segment | None]:
    """The repetitions a path selects, as (raw, segment, repetition number), and its segment."""
    if path.segment is None:
        return [(ctx.rep or "", ctx.rep_seg, ctx.rep_index)], ctx.rep_seg
    segs = ctx.segs.get(path.segment)
    if not segs:
        return [], None
    seg = segs[0]
    fields = seg.fields
    raw = fields[path.field] if path.field < len(fields) else ""
    if not raw:
        return [], seg
    rs = run.enc.repetition
    if path.literal or not rs or rs not in raw:
        reps = [raw]
    else:
        reps = raw.split(rs)
    if path.repetition:
        n = path.repetition
        return ([(reps[n - 1], seg, n)] if n <= len(reps) else []), seg
    if path.filters:
        enc = run.enc
        out = []
        for i, r in enumerate(reps, 1):
            if _matches(run, r, path.filters, enc):
                out.append((r, seg, i))
                if not path.every:
                    break
        return out, seg
    if path.every:
        return [(r, seg, i) for i, r in enumerate(reps, 1)], seg
    return [(reps[0], seg, 1)], seg


def _matches(run: _Run, rep: str, filters: tuple, enc: Encoding) -> bool:
    for comp, sub, negate, value in filters:
        want = run.param(value)
        if want is None:
            continue  # an unset $param constrains nothing (as in identity.MrnRule)
        have = _component(rep, comp, sub, enc)
        if have and enc.escape and enc.escape in have:
            have = unescape(have, enc)
        equal = have.strip().upper() == str(want).strip().upper()
        if equal == negate:
            return False
    return True


def _finish(raw: str, enc: Encoding, trim: bool) -> Any:
    """Raw (escaped) text -> CLEAR, None or the unescaped value."""
    if raw == NULL:
        return records.CLEAR
    if not raw:
        return None
    esc = enc.escape
    if esc and esc in raw:
        raw = unescape(raw, enc)
    if trim:
        raw = raw.strip()
    return raw or None


def _read(run: _Run, ctx: _Ctx, path: Path, trim: bool) -> tuple[Any, Location | None, Segment | None]:
    """The first value a path has: (value or CLEAR or None, its location, the segment)."""
    if path.field is None and path.segment is not None:  # a bare segment: present if it exists
        segs = ctx.segs.get(path.segment)
        return (path.segment if segs else None), None, (segs[0] if segs else None)
    reps, seg = _repetitions(run, ctx, path)
    enc = run.enc
    for raw, s, index in reps:
        if path.literal:
            v = raw or None
        else:
            v = _finish(_component(raw, path.component, path.subcomponent, enc), enc, trim)
        if v is not None:
            if path.segment is None:
                loc = Location(s.name if s else "", s.sequence if s else 1, ctx.rep_field, index,
                               path.component or 1, path.subcomponent)
            else:
                loc = path.location(s, index)
            return v, loc, s
    return None, None, seg


def _read_all(run: _Run, ctx: _Ctx, path: Path, trim: bool) -> list[tuple[Any, Location]]:
    """Every value a path has (all repetitions it selects), for ``concat``."""
    if path.field is None and path.segment is not None:
        return []
    reps, _ = _repetitions(run, ctx, path)
    enc = run.enc
    out = []
    for raw, s, index in reps:
        v = raw or None if path.literal else _finish(
            _component(raw, path.component, path.subcomponent, enc), enc, trim)
        if path.segment is None:
            loc = Location(s.name if s else "", s.sequence if s else 1, ctx.rep_field, index,
                           path.component or 1, path.subcomponent)
        else:
            loc = path.location(s, index)
        out.append((v, loc))
    return out


# Fast readers: what _read / _read_all compute, value only. A path is compiled once (at load
# time) into a closure; the Location of a value is built only when an error needs it, by
# running _read / _read_all again (they are pure, so they find the same value).


def _cell(raw: str, ci: int, si: int, run: _Run, trim: bool) -> Any:
    """``_finish(_component(raw, ci, si))`` in one step (``ci``, ``si`` >= 1)."""
    if raw == NULL:
        return records.CLEAR
    cs = run.cs
    if cs and cs in raw:
        if ci == 1:
            raw = raw[:raw.index(cs)]
        else:
            parts = raw.split(cs, ci)
            if ci > len(parts):
                return None
            raw = parts[ci - 1]
        if not raw:
            return None
        if raw == NULL:
            return records.CLEAR
    elif ci != 1:
        return None
    return _subcell(raw, si, run, trim)


def _subcell(raw: str, si: int, run: _Run, trim: bool) -> Any:
    """The rest of :func:`_cell` once the component ``raw`` is chosen (non-empty, not ``""``):
    its subcomponent ``si``, unescaped, trimmed."""
    ss = run.ss
    if ss and ss in raw:
        if si == 1:
            raw = raw[:raw.index(ss)]
        else:
            parts = raw.split(ss, si)
            if si > len(parts):
                return None
            raw = parts[si - 1]
        if not raw:
            return None
        if raw == NULL:
            return records.CLEAR
    elif si != 1:
        return None
    esc = run.esc
    if esc and esc in raw:
        raw = unescape(raw, run.enc)
    if trim:
        raw = raw.strip()
    return raw or None


Reader = Callable[[_Run, _Ctx], Any]


def _reader(path: Path, trim: bool) -> Reader:
    """A closure giving what ``_read(run, ctx, path, trim)[0]`` gives."""
    seg_id = path.segment
    ci = path.component or 1
    si = path.subcomponent or 1
    cell = _cell
    CLEAR = records.CLEAR
    if seg_id is None:  # relative: the current repetition
        if ci == 1 and si == 1:
            def read_rel1(run: _Run, ctx: _Ctx) -> Any:
                raw = ctx.rep
                if not raw:
                    return None
                if raw == NULL:
                    return CLEAR
                cs = run.cs
                if cs and cs in raw:  # _cell inlined for component 1
                    raw = raw[:raw.index(cs)]
                    if not raw:
                        return None
                    if raw == NULL:
                        return CLEAR
                ss = run.ss
                if ss and ss in raw:
                    raw = raw[:raw.index(ss)]
                    if not raw:
                        return None
                    if raw == NULL:
                        return CLEAR
                esc = run.esc
                if esc and esc in raw:
                    raw = unescape(raw, run.enc)
                if trim:
                    raw = raw.strip()
                return raw or None
            return read_rel1

        def read_rel(run: _Run, ctx: _Ctx) -> Any:
            raw = ctx.rep
            if not raw:
                return None
            return cell(raw, ci, si, run, trim)
        return read_rel
    if path.field is None:  # a bare segment: present if it exists
        def read_seg(run: _Run, ctx: _Ctx) -> Any:
            return seg_id if ctx.segs.get(seg_id) else None
        return read_seg
    fno = path.field
    if path.filters and not (path.literal or path.every or path.repetition):
        filters = path.filters
        matches = _matches

        def read_filtered(run: _Run, ctx: _Ctx) -> Any:
            segs = ctx.segs.get(seg_id)
            if not segs:
                return None
            fields = segs[0].fields
            if fno >= len(fields):
                return None
            raw = fields[fno]
            if not raw:
                return None
            rs = run.rs
            enc = run.enc
            for r in (raw.split(rs) if rs and rs in raw else (raw,)):
                if matches(run, r, filters, enc):
                    return cell(r, ci, si, run, trim)  # only the first repetition that matches
            return None
        return read_filtered
    if path.literal or path.filters or path.every:
        def read_any(run: _Run, ctx: _Ctx) -> Any:
            return _read(run, ctx, path, trim)[0]
        return read_any
    n = path.repetition
    if not n:
        def read_first(run: _Run, ctx: _Ctx) -> Any:
            segs = ctx.segs.get(seg_id)
            if not segs:
                return None
            fields = segs[0].fields
            if fno >= len(fields):
                return None
            raw = fields[fno]
            if not raw:
                return None
            rs = run.rs
            if rs and rs in raw:
                raw = raw[:raw.index(rs)]
                if not raw:
                    return None
            return cell(raw, ci, si, run, trim)
        return read_first

    def read_nth(run: _Run, ctx: _Ctx) -> Any:
        segs = ctx.segs.get(seg_id)
        if not segs:
            return None
        fields = segs[0].fields
        if fno >= len(fields):
            return None
        raw = fields[fno]
        if not raw:
            return None
        rs = run.rs
        if rs and rs in raw:
            reps = raw.split(rs)
            if n > len(reps):
                return None
            raw = reps[n - 1]
        elif n != 1:
            return None
        return cell(raw, ci, si, run, trim)
    return read_nth


def _all_reader(path: Path, trim: bool) -> Callable[[_Run, _Ctx], list]:
    """A closure giving the values of ``_read_all(run, ctx, path, trim) or [(None, None)]``."""
    if path.field is not None and not (path.literal or path.filters or path.every):
        one = _reader(path, trim)  # at most one repetition: [value], or [None] when absent
        return lambda run, ctx: [one(run, ctx)]
    if path.segment is None:
        one = _reader(path, trim)
        return lambda run, ctx: [one(run, ctx)]

    def read_all(run: _Run, ctx: _Ctx) -> list:
        return [v for v, _ in _read_all(run, ctx, path, trim)] or [None]
    return read_all


def _where(path: Path, ctx: _Ctx) -> Location:
    """Where a missing value should have been: the segment in view, or its first occurrence."""
    if path.segment is None:
        s = ctx.rep_seg
        return Location(s.name if s else "", s.sequence if s else 1, ctx.rep_field,
                        ctx.rep_index, path.component or 1, path.subcomponent)
    segs = ctx.segs.get(path.segment)
    return path.location(segs[0] if segs else None, path.repetition)


# ---------------------------------------------------------------------------------------------
# runtime: compiled field specs


class _Cond:
    __slots__ = ("path", "present", "equals", "not_equals", "in_", "not_in", "read")

    def __init__(self, path: Path, w: When):
        self.path = path
        self.present = w.present
        self.equals = w.equals
        self.not_equals = w.not_equals
        self.in_ = w.in_
        self.not_in = w.not_in
        self.read = _reader(path, True)

    def holds(self, run: _Run, ctx: _Ctx) -> bool:
        return self._check(run, self.read(run, ctx))

    def holds_slow(self, run: _Run, ctx: _Ctx) -> bool:
        """``holds`` by the reference interpreter (``_read``)."""
        return self._check(run, _read(run, ctx, self.path, True)[0])

    def _check(self, run: _Run, v: Any) -> bool:
        if v is records.CLEAR:
            v = None
        if self.present is not None and (v is not None) != self.present:
            return False
        text = (v or "").upper()
        if self.equals is not None and text != str(run.param(self.equals) or "").upper():
            return False
        if self.not_equals is not None and text == str(run.param(self.not_equals) or "").upper():
            return False
        if self.in_ is not None and text not in {str(run.param(x) or "").upper() for x in self.in_}:
            return False
        if self.not_in is not None and text in {str(run.param(x) or "").upper() for x in self.not_in}:
            return False
        return True


def _all_hold_slow(conds: tuple[_Cond, ...], run: _Run, ctx: _Ctx) -> bool:
    for c in conds:
        if not c.holds_slow(run, ctx):
            return False
    return True


def _all_hold(conds: tuple[_Cond, ...], run: _Run, ctx: _Ctx) -> bool:
    for c in conds:
        if not c.holds(run, ctx):
            return False
    return True


class _Target:
    """A dotted target compiled to attribute names plus factories for objects made on the way."""

    __slots__ = ("text", "attrs", "factories", "setter")

    def __init__(self, text: str, attrs: tuple[str, ...], factories: tuple[Callable, ...]):
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

    _FIELDS = ("target", "paths", "const", "mrn", "lenient", "concat", "separator", "keep_empty",
               "steps", "default", "required", "trim", "conds")
    __slots__ = _FIELDS + ("run",)

    def __init__(self, **kw):
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
        tail = None  # what follows when no from: path has a value
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
        return lambda run, ctx: run.param(const)

    def _mrn_value(self, run: _Run, ctx: _Ctx) -> Any:
        p: Path = self.mrn
        segs = ctx.segs.get(p.segment)
        if not segs:
            return None
        raw = segs[0].raw(p.field)
        if raw == NULL:
            return records.CLEAR
        if not raw:
            return None
        value = pick_mrn(raw, run.enc, run.rule)
        if value is None and self.lenient:
            value = _pick_lenient(raw, run.enc, run.rule)
        return value

    def _fast_concat(self) -> Reader:
        readers = tuple(_all_reader(p, self.trim) for p in self.concat)
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
                first = (self.paths[0] if self.paths else self.concat[0] if self.concat
                         else self.mrn)
                where = loc or (_where(first, ctx) if first else None)
                raise RequiredFieldMissing(f"{self.target.text}: required value missing", where)
            if value is None:
                return False
        elif self.steps:
            for step in self.steps:
                try:
                    value = step(value, run)
                except transforms.BadValue as exc:
                    raise DataError(f"{self.target.text}: {exc}", loc,
                                    code=getattr(exc, "code", None)) from None
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
        return run.param(self.const), None

    def _mrn(self, run: _Run, ctx: _Ctx) -> tuple[Any, Location | None]:
        p: Path = self.mrn
        segs = ctx.segs.get(p.segment)
        if not segs:
            return None, None
        seg = segs[0]
        raw = seg.raw(p.field)
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
        for p in self.concat:
            for v, lo in _read_all(run, ctx, p, self.trim) or [(None, None)]:
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


_MISSING = object()  # a _Batch slot not read yet
_NULL_REP = object()  # a _Batch slot whose repetition is the HL7 null


def _simple_path(p: Path) -> bool:
    """A path _Batch reads: relative, or one repetition of a field (no filter, no [*])."""
    if p.segment is None:
        return True
    return p.field is not None and not (p.literal or p.filters or p.every)


def _batchable(spec: Any) -> bool:
    return (isinstance(spec, _Scalar) and not spec.conds and not spec.required and spec.mrn is None
            and (spec.paths is not None or spec.concat is not None)
            and all(_simple_path(p) for p in [*(spec.paths or ()), *(spec.concat or ())]))


class _Batch:
    """Consecutive plain scalars (``from:`` paths, optional transforms) run in one loop, each
    repetition split into components once. Same result as running them one by one: they are
    run in order, and a failing transform raises through the scalar's reference path."""

    __slots__ = ("specs", "sources", "items")

    def __init__(self, specs: list[_Scalar]):
        self.specs = specs
        sources: list[tuple] = []  # (segment or None, field, repetition)
        items = []
        def reads(paths: list[Path], trim: bool) -> tuple:
            out = []
            for p in paths:
                src = (p.segment, p.field, p.repetition or 1) if p.segment is not None else (None, 0, 0)
                if src not in sources:
                    sources.append(src)
                out.append((sources.index(src), p.component or 1, p.subcomponent or 1, trim))
            return tuple(out)

        for spec in specs:
            concat = None
            if spec.concat is not None:
                concat = (reads(spec.concat, spec.trim), spec.keep_empty, spec.separator)
            attrs = spec.target.attrs
            items.append((reads(spec.paths or [], spec.trim), concat, spec.default, spec.steps or (),
                          attrs[0] if len(attrs) == 1 else None, spec.target.setter, spec.run_slow))
        self.sources = tuple(sources)
        self.items = tuple(items)

    def _cell(self, cache: list, i: int, ci: int, si: int, trim: bool, run: _Run, ctx: _Ctx) -> Any:
        """One read (what ``_cell`` gives for the repetition of source ``i``), through the cache."""
        comps = cache[i]
        if comps is _MISSING:
            comps = cache[i] = self._load(i, run, ctx)
        if comps is None:
            return None
        if comps is _NULL_REP:
            return records.CLEAR
        if ci > len(comps):
            return None
        raw = comps[ci - 1]
        if not raw:
            return None
        if raw == NULL:
            return records.CLEAR
        return _subcell(raw, si, run, trim)

    def _load(self, i: int, run: _Run, ctx: _Ctx) -> Any:
        """The components of the repetition source ``i`` reads; None when it has no value."""
        seg_id, fno, n = self.sources[i]
        if seg_id is None:
            raw = ctx.rep
        else:
            segs = ctx.segs.get(seg_id)
            if not segs:
                return None
            fields = segs[0].fields
            if fno >= len(fields):
                return None
            raw = fields[fno]
            if not raw:
                return None
            rs = run.rs
            if rs and rs in raw:
                reps = raw.split(rs)
                if n > len(reps):
                    return None
                raw = reps[n - 1]
            elif n != 1:
                return None
        if not raw:
            return None
        if raw == NULL:
            return _NULL_REP
        cs = run.cs
        return raw.split(cs) if cs and cs in raw else (raw,)

    def run(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        sources = self.sources
        cache = [_MISSING] * len(sources)
        CLEAR = records.CLEAR
        rs = run.rs
        cs = run.cs
        ss = run.ss
        esc = run.esc
        touched = False
        for reads, concat, default, steps, name, setter, slow in self.items:
            value = None
            for i, ci, si, trim in reads:  # the first path with a value (_cell, per path)
                comps = cache[i]
                if comps is _MISSING:  # _load inlined
                    seg_id, fno, n = sources[i]
                    if seg_id is None:
                        raw = ctx.rep
                    else:
                        segs = ctx.segs.get(seg_id)
                        raw = None
                        if segs:
                            fields = segs[0].fields
                            if fno < len(fields):
                                raw = fields[fno]
                                if raw and rs and rs in raw:
                                    reps = raw.split(rs)
                                    raw = reps[n - 1] if n <= len(reps) else None
                                elif n != 1:
                                    raw = None
                    if not raw:
                        comps = None
                    elif raw == NULL:
                        comps = _NULL_REP
                    else:
                        comps = raw.split(cs) if cs and cs in raw else (raw,)
                    cache[i] = comps
                if comps is None:
                    continue
                if comps is _NULL_REP:
                    value = CLEAR
                    break
                if ci > len(comps):
                    continue
                raw = comps[ci - 1]
                if not raw:
                    continue
                if raw == NULL:
                    value = CLEAR
                    break
                if ss and ss in raw:
                    if si == 1:
                        raw = raw[:raw.index(ss)]
                    else:
                        parts = raw.split(ss, si)
                        if si > len(parts):
                            continue
                        raw = parts[si - 1]
                    if not raw:
                        continue
                    if raw == NULL:
                        value = CLEAR
                        break
                elif si != 1:
                    continue
                if esc and esc in raw:
                    raw = unescape(raw, run.enc)
                if trim:
                    raw = raw.strip()
                if raw:
                    value = raw
                    break
            if value is None:
                if concat is not None:  # _Scalar._concat: each simple path gives one value
                    creads, keep_empty, sep = concat
                    parts: list[str] = []
                    nulls = 0
                    for i, ci, si, trim in creads:
                        v = self._cell(cache, i, ci, si, trim, run, ctx)
                        if v is None or v is CLEAR:
                            if v is not None:
                                nulls += 1
                            if keep_empty:
                                parts.append("")
                            continue
                        parts.append(v)
                    while parts and parts[-1] == "":
                        parts.pop()
                    if parts:
                        value = sep.join(parts)
                    elif nulls:
                        value = CLEAR
                if value is None and default is not None:
                    value = run.param(default)
                if value is None:
                    continue
            if steps and value is not CLEAR:
                try:
                    for step in steps:
                        value = step(value, run)
                except transforms.BadValue:
                    slow(run, ctx, obj)  # raises DataError with the value's Location
                    raise
            if name is not None:
                setattr(obj, name, value)
            else:
                setter(obj, value)
            touched = True
        return touched


def _plan(specs: list) -> list:
    """The specs as run: runs of two or more batchable scalars become one _Batch."""
    out: list = []
    run: list = []
    for spec in specs + [None]:
        if spec is not None and _batchable(spec):
            run.append(spec)
            continue
        if len(run) > 1:
            out.append(_Batch(run))
        else:
            out.extend(run)
        run = []
        if spec is not None:
            out.append(spec)
    return out


class _Block:
    """``each`` (a list of records) or ``select`` (one nested record) with its own ``fields``."""

    _FIELDS = ("target", "sources", "members", "skip", "select", "item_type", "specs", "conds",
               "key", "append")
    __slots__ = _FIELDS + ("plan",)

    def __init__(self, **kw):
        for k in self._FIELDS:
            setattr(self, k, kw.get(k))
        self.plan = _plan(self.specs)

    def _items(self, run: _Run, ctx: _Ctx):
        """Yield (item context, repetition key or None, is_null) for every candidate."""
        for p in self.sources:
            if p.field is None:
                for g in _segment_groups(ctx, p.segment, self.members):
                    yield g, None, False
                continue
            reps, _ = _repetitions(run, ctx, p)
            for raw, seg, index in reps:
                yield (_Ctx(ctx.segs, ctx.order, raw, seg, p.field, index),
                       (seg.index, p.field, index), raw == NULL)

    def run(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        if self.select:
            return self._run_select(run, ctx, obj)
        skip = run.chosen.get(self.skip) if self.skip else None
        out = []
        cleared = False
        conds = self.conds
        plan = self.plan
        make = self.item_type
        for p in self.sources:  # what _items yields, without the generator
            if p.field is None:
                item_ctxs = _segment_groups(ctx, p.segment, self.members)  # key None: never skipped
            else:
                item_ctxs = []
                fno = p.field
                for raw, seg, index in _repetitions(run, ctx, p)[0]:
                    if raw == NULL:
                        cleared = True
                        continue
                    if skip is not None and (seg.index, fno, index) == skip:
                        continue
                    item_ctxs.append(_Ctx(ctx.segs, ctx.order, raw, seg, fno, index))
            for item_ctx in item_ctxs:
                if conds and not _all_hold(conds, run, item_ctx):
                    continue
                item = make()
                touched = False
                for spec in plan:
                    touched = spec.run(run, item_ctx, item) or touched
                if touched:
                    out.append(item)
        if self.append and out:
            existing = self.target.get(obj)
            if isinstance(existing, list):
                existing.extend(out)
                return True
        if out or (cleared and not self.append):
            self.target.set(obj, out)
            return True
        return False

    def _items_slow(self, run: _Run, ctx: _Ctx):
        for p in self.sources:
            if p.field is None:
                for g in _segment_groups_slow(ctx, p.segment, self.members):
                    yield g, None, False
                continue
            reps, _ = _repetitions(run, ctx, p)
            for raw, seg, index in reps:
                yield (_Ctx(ctx.segs, ctx.order, raw, seg, p.field, index),
                       (seg.index, p.field, index), raw == NULL)

    def run_slow(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        """``run`` by the reference interpreter (field by field, ``run_slow`` all the way down)."""
        if self.select:
            for item_ctx, key, is_null in self._items_slow(run, ctx):
                if not is_null and not item_ctx.rep:
                    continue
                if self.conds and not _all_hold_slow(self.conds, run, item_ctx):
                    continue
                run.chosen[self.key] = key
                item = self.item_type()
                touched = False
                for spec in self.specs:
                    touched = spec.run_slow(run, item_ctx, item) or touched
                if touched:
                    self.target.set(obj, item)
                return touched
            return False
        skip = run.chosen.get(self.skip) if self.skip else None
        out = []
        cleared = False
        for item_ctx, key, is_null in self._items_slow(run, ctx):
            if is_null:
                cleared = True
                continue
            if skip is not None and key == skip:
                continue
            if self.conds and not _all_hold_slow(self.conds, run, item_ctx):
                continue
            item = self.item_type()
            touched = False
            for spec in self.specs:
                touched = spec.run_slow(run, item_ctx, item) or touched
            if touched:
                out.append(item)
        if self.append and out:
            existing = self.target.get(obj)
            if isinstance(existing, list):
                existing.extend(out)
                return True
        if out or (cleared and not self.append):
            self.target.set(obj, out)
            return True
        return False

    def _run_select(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        conds = self.conds
        for p in self.sources:  # field repetitions only (the compiler refuses segments here)
            fno = p.field
            if fno is None:
                return self._run_select_items(run, ctx, obj)
            for raw, seg, index in _repetitions(run, ctx, p)[0]:
                if not raw:  # neither a value nor the HL7 null
                    continue
                item_ctx = _Ctx(ctx.segs, ctx.order, raw, seg, fno, index)
                if conds and not _all_hold(conds, run, item_ctx):
                    continue
                run.chosen[self.key] = (seg.index, fno, index)
                item = self.item_type()
                touched = False
                for spec in self.plan:
                    touched = spec.run(run, item_ctx, item) or touched
                if touched:
                    self.target.set(obj, item)
                return touched
        return False

    def _run_select_items(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        for item_ctx, key, is_null in self._items(run, ctx):
            if not is_null and not item_ctx.rep:
                continue
            if self.conds and not _all_hold(self.conds, run, item_ctx):
                continue
            run.chosen[self.key] = key
            item = self.item_type()
            touched = False
            for spec in self.plan:
                touched = spec.run(run, item_ctx, item) or touched
            if touched:
                self.target.set(obj, item)
            return touched
        return False


# ---------------------------------------------------------------------------------------------
# compiling


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list


class _Compiler:
    def __init__(self, doc: Located, spec: MappingSpec, tables: TableSet):
        self.doc = doc
        self.spec = spec
        self.tables = tables
        self.problems: list[str] = []
        self.selects: set[str] = set()  # targets of select: blocks seen so far (for skip:)

    def problem(self, where: tuple, message: str) -> None:
        self.problems.append(f"{self.doc.file}:{self.doc.line(where)}: {message}")

    def path(self, text: Any, where: tuple, kind: str) -> Path | None:
        try:
            p = parse_path(text)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None
        if p.segment is None and kind != "rep":
            self.problem(where, f"relative path {p.text!r} is only allowed inside each:/select: over a field's repetitions")
            return None
        return p

    def fields(self, specs: list[FieldSpec], root: type, where: tuple, kind: str) -> list:
        out = []
        for i, fs in enumerate(specs):
            c = self.field(fs, root, where + (i,), kind)
            if c is not None:
                out.append(c)
        return out

    def target(self, text: str, root: type, where: tuple) -> tuple[_Target | None, Any]:
        if "[" in text:
            self.problem(where + ("to",), f"target {text!r}: build lists with each:, not []")
            return None, None
        try:
            tp = records.target_type(root, text)
        except KeyError as exc:
            self.problem(where + ("to",), f"unknown target {text!r} (no field {exc.args[0]!r} in {root.__name__})")
            return None, None
        parts = text.split(".")
        attrs = tuple("class_" if p == "class" else p for p in parts)
        factories = []
        for n in range(1, len(parts)):
            factories.append(records.target_type(root, ".".join(parts[:n])))
        return _Target(text, attrs, tuple(factories)), tp

    def conds(self, when: Any, where: tuple, kind: str) -> tuple[_Cond, ...]:
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

    def param_ref(self, value: Any, where: tuple) -> None:
        if isinstance(value, str) and value.startswith("$"):
            if not _PARAM.match(value):
                self.problem(where, f"bad parameter name {value!r}")

    def steps(self, transform: Any, where: tuple) -> tuple[Step, ...]:
        if transform is None:
            return ()
        items = transform if isinstance(transform, list) else [transform]
        out: list[Step] = []
        for i, t in enumerate(items):
            wh = where + ("transform",) + ((i,) if isinstance(transform, list) else ())
            if isinstance(t, str):
                if t in transforms.SIMPLE:
                    fn = transforms.SIMPLE[t]
                    out.append(lambda v, run, fn=fn: fn(v))
                elif t in transforms.WITH_TIME_ZONE:
                    fn = transforms.WITH_TIME_ZONE[t]
                    out.append(lambda v, run, fn=fn: fn(v, run.tz))
                else:
                    self.problem(wh, f"unknown transform {t!r} (known: {', '.join(transforms.NAMES)})")
            elif isinstance(t, dict) and list(t) == ["table"]:
                out_step = self.table_step(t["table"], wh)
                if out_step:
                    out.append(out_step)
            else:
                self.problem(wh, f"unknown transform {t!r} (a name, or {{table: NAME}})")
        return tuple(out)

    def table_step(self, name: Any, where: tuple) -> Step | None:
        try:
            table = self.tables.get(str(name))
        except KeyError:
            self.problem(where, f"unknown table {name!r} (no file {self.tables.directory / f'{name}.yaml'})")
            return None
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

        def lookup(v: str, run: _Run, table=table) -> str:
            hit = table.lookup(v)
            if hit is None:
                err = transforms.BadValue(f"code not in table {table.name}")
                err.code = TABLE_VALUE_NOT_FOUND
                raise err
            return hit

        return lookup

    def field(self, fs: FieldSpec, root: type, where: tuple, kind: str):
        block = fs.each is not None or fs.select is not None
        scalar_sources = [k for k, v in (("from", fs.from_), ("value", fs.value), ("mrn", fs.mrn),
                                         ("concat", fs.concat)) if v is not None]
        if block and scalar_sources:
            self.problem(where, f"{'each' if fs.each is not None else 'select'}: cannot be combined with {scalar_sources[0]}:")
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
            self.problem(where, "say where the value comes from: exactly one of from:, value:, mrn:, concat:, each:, select:"
                         if not scalar_sources else f"use only one of {', '.join(k + ':' for k in scalar_sources)}")
            return None
        if tp is not None and tp is not str and tp is not Any:
            self.problem(where + ("to",), f"target {fs.to!r} is not a single value; use each: or select: to fill it")
            target = None
        paths = mrn = concat = None
        if fs.from_ is not None:
            raw = fs.from_ if isinstance(fs.from_, list) else [fs.from_]
            paths = [self.path(p, where + ("from",) + ((i,) if isinstance(fs.from_, list) else ()), kind)
                     for i, p in enumerate(raw)]
            if not raw:
                self.problem(where + ("from",), "from: is empty")
            if any(p is None for p in paths):
                return None
        if fs.mrn is not None:
            mrn = self.path(fs.mrn, where + ("mrn",), "seg")
            if mrn is None:
                return None
            if mrn.field is None or mrn.component or mrn.filters or mrn.repetition or mrn.every:
                self.problem(where + ("mrn",), f"mrn: takes a whole CX field such as PID-3 or MRG-1, not {fs.mrn!r}")
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
        return _Scalar(target=target, paths=paths, const=fs.value, mrn=mrn, lenient=fs.lenient,
                       concat=concat, separator=fs.separator, keep_empty=fs.keep_empty, steps=steps,
                       default=fs.default, required=fs.required,
                       trim=self.spec.trim if fs.trim is None else fs.trim, conds=conds)

    def block(self, fs: FieldSpec, target: _Target | None, tp: Any, where: tuple, kind: str):
        is_each = fs.each is not None
        key = "each" if is_each else "select"
        src = fs.each if is_each else fs.select
        raw = src if isinstance(src, list) else [src]
        for k in ("transform", "default", "trim"):
            if getattr(fs, k) is not None:
                self.problem(where + (k,), f"{k}: does not apply to a {key}: block; put it on its fields")
        if fs.required:
            self.problem(where + ("required",), f"required: does not apply to a {key}: block; put it on its fields")
        if not is_each and (fs.group is not None or fs.skip is not None or fs.append):
            self.problem(where, "group:, skip: and append: only apply to each:")
        sources = [self.path(p, where + (key,) + ((i,) if isinstance(src, list) else ()), kind)
                   for i, p in enumerate(raw)]
        if not raw:
            self.problem(where + (key,), f"{key}: is empty")
        if any(p is None for p in sources):
            return None
        seg_sources = [p for p in sources if p.field is None]
        if seg_sources and (len(seg_sources) != len(sources) or not is_each):
            self.problem(where + (key,), f"{key}: takes either segments (NK1, IN1) or field repetitions (PID-3[*]), not a mix"
                         if is_each else "select: takes field repetitions such as PID-5[XPN-7=L]")
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
                self.problem(where + ("to",), f"each: needs a list target; {fs.to!r} is not a list of records")
                return None
            item_type = typing.get_args(tp)[0]
        else:
            if not dataclasses.is_dataclass(tp):
                self.problem(where + ("to",), f"select: needs a record target such as patient.name; {fs.to!r} is a single value")
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
        return _Block(target=target, sources=sources, members=members, skip=skip,
                      select=not is_each, item_type=item_type, specs=specs, conds=conds, key=fs.to,
                      append=fs.append)


# ---------------------------------------------------------------------------------------------
# test cases written beside a mapping


@dataclass
class Case:
    """One ``tests:`` entry: a message, params, and the expected output or error."""

    name: str
    line: int
    text: str
    params: dict
    expect: Any = None
    expect_error: ExpectError | None = None


def _check_expect(value: Any, tp: Any, where: tuple, comp: _Compiler) -> None:
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
                comp.problem(where + (k,), f"expect: {tp.__name__} has no field {k!r}")
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
        out.append(Case(c.name, comp.doc.line(where), c.message, dict(c.params), c.expect,
                        c.expect_error))
    return out


# ---------------------------------------------------------------------------------------------
# the compiled mapping


class Mapping:
    """A compiled mapping. ``apply`` is pure: message and params in, records out."""

    def __init__(self, name: str, root: str, file: str, description: str, specs: list,
                 records_each: str | None, defaults: dict, tests: list[Case], messages: list[str]):
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

    def apply(self, message: Message, params: dict | None = None) -> list:
        """The records this message makes: ``list[ChartUpdate]`` or ``list[Document]``.

        ``params``: ``authority`` and ``id_types`` (the channel's MRN rule), ``timezone`` (IANA
        name for times without offset; default UTC) and any analyst ``$name`` params; they
        override the mapping's own ``params:`` defaults. Raises ``RequiredFieldMissing`` /
        ``DataError`` with the location of the offending field.
        """
        return self._records(message, params, reference=False)

    def apply_reference(self, message: Message, params: dict | None = None) -> list:
        """``apply`` by the reference interpreter: every field read and located one by one, as
        written. Slow; the fast paths of ``apply`` (compiled readers, batches) must give exactly
        this (tests/test_mapping_speed_equivalence.py)."""
        return self._records(message, params, reference=True)

    def _records(self, message: Message, params: dict | None, reference: bool) -> list:
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
                for spec in self._plan:
                    spec.run(run, ctx, obj)
            out.append(obj)
        return out


def _load(path: str | FilePath, tables: TableSet | None = None) -> Mapping:
    p = FilePath(path)
    doc = load_yaml(p)
    if not isinstance(doc.data, dict):
        raise ConfigError([f"{doc.file}:{doc.line(())}: a mapping is a YAML mapping with name:, root: and fields:"])
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
    from .mapping_hl7 import check as check_hl7  # every path against the version's definitions

    comp.problems.extend(q for q in check_hl7(doc, spec) if q not in comp.problems)
    if comp.problems:
        raise ConfigError(comp.problems)
    return Mapping(spec.name, spec.root, str(p), spec.description, specs,
                   spec.records.each if spec.records else None, dict(spec.params), cases,
                   list(spec.messages))


def load_mapping(path: str | FilePath) -> Mapping:
    """Load and compile one mapping file. ConfigError lists every problem as ``file:line: message``."""
    return _load(path)


def mapping_files(directory: str | FilePath) -> list[FilePath]:
    """The mapping files of a directory (``*.yaml`` directly in it; ``tables/`` holds code tables)."""
    d = FilePath(directory)
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_mappings(directory: str | FilePath) -> dict[str, Mapping]:
    """Every mapping in a directory, by name. ConfigError lists every problem of every file."""
    d = FilePath(directory)
    problems: list[str] = []
    out: dict[str, Mapping] = {}
    if not d.is_dir():
        raise ConfigError([f"{d}:1: not a directory"])
    tables = TableSet(d / "tables")
    for f in mapping_files(d):
        try:
            m = _load(f, tables)
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
                    from .codetables import check_table_files
                    problems.extend(q for q in check_table_files(p / "tables") if q not in problems)
            elif p.is_file():
                load_mapping(p)
            else:
                problems.append(f"{p}:1: no such file or directory")
        except ConfigError as exc:
            problems.extend(q for q in exc.problems if q not in problems)
    return problems
