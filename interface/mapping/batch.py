"""The batch fast path: simple paths read in one pass over the segments, the
same answers as the general reader (tests/test_mapping_speed_equivalence.py).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeGuard, cast

from interface.hl7.message import Segment, unescape
from interface.mapping import records, transforms
from interface.mapping.paths import Path
from interface.mapping.reader import (
    Key,
    _all_hold,
    _all_hold_slow,
    _Cond,
    _Ctx,
    _repetitions,
    _Run,
    _segment_groups,
    _segment_groups_slow,
    _subcell,
    nth_repetition,
)
from interface.mapping.spec import NULL
from interface.mapping.targets import Step, _Scalar, _Target

_MISSING = object()  # a _Batch slot not read yet
_NULL_REP = object()  # a _Batch slot whose repetition is the HL7 null

_Source = tuple[str | None, int, int]  # (segment or None: the current repetition, field, repetition)
_Read = tuple[int, int, int, bool]  # (source, component, subcomponent, trim)
_Item = tuple[
    tuple[_Read, ...],  # the from: paths
    tuple[tuple[_Read, ...], bool, str] | None,  # concat: (paths, keep_empty, separator)
    str | None,  # default
    tuple[Step, ...],
    str | None,  # the attribute name of a one-name target (else: the setter)
    Callable[[Any, Any], None],  # the target's setter
    Callable[[_Run, _Ctx, Any], bool],  # the scalar's run_slow
]


def _simple_path(p: Path) -> bool:
    """A path _Batch reads: relative, or one repetition of a field (no filter, no [*])."""
    if p.segment is None:
        return True
    return p.field is not None and not (p.literal or p.filters or p.every)


def _batchable(spec: Any) -> TypeGuard[_Scalar]:
    return (
        isinstance(spec, _Scalar)
        and not spec.conds
        and not spec.required
        and spec.mrn is None
        and (spec.paths is not None or spec.concat is not None)
        and all(_simple_path(p) for p in [*(spec.paths or ()), *(spec.concat or ())])
    )


class _Batch:
    """Consecutive plain scalars (``from:`` paths, optional transforms) run in one loop, each
    repetition split into components once. Same result as running them one by one: they are
    run in order, and a failing transform raises through the scalar's reference path."""

    __slots__ = ("specs", "sources", "items")
    specs: list[_Scalar]
    sources: tuple[_Source, ...]
    items: tuple[_Item, ...]

    def __init__(self, specs: list[_Scalar]):
        self.specs = specs
        sources: list[_Source] = []
        items: list[_Item] = []

        def reads(paths: list[Path], trim: bool) -> tuple[_Read, ...]:
            out: list[_Read] = []
            for p in paths:
                # a simple path with a segment names a field (_simple_path)
                src = (
                    (p.segment, cast(int, p.field), p.repetition or 1)
                    if p.segment is not None
                    else (None, 0, 0)
                )
                if src not in sources:
                    sources.append(src)
                out.append((sources.index(src), p.component or 1, p.subcomponent or 1, trim))
            return tuple(out)

        for spec in specs:
            concat = None
            if spec.concat is not None:
                concat = (reads(spec.concat, spec.trim), spec.keep_empty, spec.separator)
            attrs = spec.target.attrs
            items.append(
                (
                    reads(spec.paths or [], spec.trim),
                    concat,
                    spec.default,
                    spec.steps or (),
                    attrs[0] if len(attrs) == 1 else None,
                    spec.target.setter,
                    spec.run_slow,
                )
            )
        self.sources = tuple(sources)
        self.items = tuple(items)

    def _cell(self, cache: list[Any], i: int, ci: int, si: int, trim: bool, run: _Run, ctx: _Ctx) -> Any:
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
            raw = nth_repetition(ctx, seg_id, fno, n, run.rs)
        if not raw:
            return None
        if raw == NULL:
            return _NULL_REP
        cs = run.cs
        return raw.split(cs) if cs and cs in raw else (raw,)

    def run(self, run: _Run, ctx: _Ctx, obj: Any) -> bool:
        sources = self.sources
        cache: list[Any] = [_MISSING] * len(sources)
        CLEAR = records.CLEAR
        rs = run.rs
        cs = run.cs
        ss = run.ss
        esc = run.esc
        touched = False
        for reads, concat, default, steps, name, setter, slow in self.items:
            value: Any = None
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
                        raw = raw[: raw.index(ss)]
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
                    parts = []
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


def _plan(specs: list[_Scalar | _Block]) -> list[_Scalar | _Batch | _Block]:
    """The specs as run: runs of two or more batchable scalars become one _Batch."""
    out: list[_Scalar | _Batch | _Block] = []
    run: list[_Scalar] = []
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

    _FIELDS = (
        "target",
        "sources",
        "members",
        "skip",
        "select",
        "item_type",
        "specs",
        "conds",
        "key",
        "append",
    )
    __slots__ = _FIELDS + ("plan",)
    target: _Target
    sources: list[Path]
    members: frozenset[str]
    skip: str | None
    select: bool
    item_type: Callable[[], Any]
    specs: list[_Scalar | _Block]
    conds: tuple[_Cond, ...]
    key: str
    append: bool
    plan: list[_Scalar | _Batch | _Block]

    def __init__(self, **kw: Any) -> None:
        for k in self._FIELDS:
            setattr(self, k, kw.get(k))
        self.plan = _plan(self.specs)

    def _items(self, run: _Run, ctx: _Ctx) -> Iterator[tuple[_Ctx, Key | None, bool]]:
        """Yield (item context, repetition key or None, is_null) for every candidate."""
        for p in self.sources:
            if p.field is None:
                for g in _segment_groups(ctx, cast(str, p.segment), self.members):  # a segment: field None
                    yield g, None, False
                continue
            reps, _ = _repetitions(run, ctx, p)
            for raw, seg, index in reps:
                yield (
                    _Ctx(ctx.segs, ctx.order, raw, seg, p.field, index),
                    (cast(Segment, seg).index, p.field, index),
                    raw == NULL,
                )

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
                item_ctxs = _segment_groups(
                    ctx, cast(str, p.segment), self.members
                )  # key None: never skipped
            else:
                item_ctxs = []
                fno = p.field
                for raw, seg, index in _repetitions(run, ctx, p)[0]:
                    if raw == NULL:
                        cleared = True
                        continue
                    if skip is not None and (cast(Segment, seg).index, fno, index) == skip:
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

    def _items_slow(self, run: _Run, ctx: _Ctx) -> Iterator[tuple[_Ctx, Key | None, bool]]:
        for p in self.sources:
            if p.field is None:
                for g in _segment_groups_slow(ctx, cast(str, p.segment), self.members):
                    yield g, None, False
                continue
            reps, _ = _repetitions(run, ctx, p)
            for raw, seg, index in reps:
                yield (
                    _Ctx(ctx.segs, ctx.order, raw, seg, p.field, index),
                    (cast(Segment, seg).index, p.field, index),
                    raw == NULL,
                )

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
                run.chosen[self.key] = (cast(Segment, seg).index, fno, index)
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
