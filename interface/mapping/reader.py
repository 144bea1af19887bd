"""Reading a message by field path: segment groups, repetitions, filters and
conditions, each compiled once into a closure.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, cast

from interface.hl7.errors import Location
from interface.hl7.identity import MrnRule
from interface.hl7.message import Encoding, Message, Segment, unescape
from interface.mapping import records
from interface.mapping.paths import Path, _component
from interface.mapping.spec import NULL, When

Key = tuple[int, int | None, int | None]  # a repetition: (segment index, field, repetition number)


class _Run:
    """The state of one ``apply``: the message, the params and what ``select`` blocks chose."""

    __slots__ = ("message", "enc", "params", "rule", "tz", "chosen", "rs", "cs", "ss", "esc")

    def __init__(self, message: Message, params: dict[str, Any]):
        self.message = message
        enc = self.enc = message.encoding
        self.rs = enc.repetition
        self.cs = enc.component
        self.ss = enc.subcomponent
        self.esc = enc.escape
        self.params = params
        self.rule = _rule(params.get("authority"), _types(params.get("id_types")))
        self.tz = params.get("timezone") or "UTC"
        self.chosen: dict[str, Key | None] = {}  # what each select: block chose (its target)

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

    def __init__(
        self,
        segs: dict[str, list[Segment]],
        order: list[Segment],
        rep: str | None = None,
        rep_seg: Segment | None = None,
        rep_field: int | None = None,
        rep_index: int | None = None,
    ):
        self.segs = segs
        self.order = order
        self.rep = rep
        self.rep_seg = rep_seg
        self.rep_field = rep_field
        self.rep_index = rep_index


def nth_repetition(ctx: _Ctx, seg_id: str, fno: int, n: int, rs: str) -> str | None:
    """Repetition ``n`` (1-based) of field ``fno`` of the first ``seg_id`` segment in view; None
    when the segment or the field is absent or empty, or it has fewer repetitions (an empty
    repetition is ``""``). The one copy the general reader and the batch fast path share."""
    segs = ctx.segs.get(seg_id)
    if not segs:
        return None
    fields = segs[0].fields
    if fno >= len(fields):
        return None
    raw = fields[fno]
    if not raw:
        return None
    if rs and rs in raw:
        reps = raw.split(rs)
        if n > len(reps):
            return None
        return reps[n - 1]
    return raw if n == 1 else None


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
        elif current is not None and (members is None or name in members or (members and name[:1] == "Z")):
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
        elif current is not None and (members is None or name in members or (members and name[:1] == "Z")):
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


def _repetitions(
    run: _Run, ctx: _Ctx, path: Path
) -> tuple[list[tuple[str, Segment | None, int | None]], Segment | None]:
    """The repetitions a path selects, as (raw, segment, repetition number), and its segment."""
    if path.segment is None:
        return [(ctx.rep or "", ctx.rep_seg, ctx.rep_index)], ctx.rep_seg
    segs = ctx.segs.get(path.segment)
    if not segs:
        return [], None
    seg = segs[0]
    fields = seg.fields
    fno = cast(int, path.field)  # a field: the callers answer a bare segment themselves
    raw = fields[fno] if fno < len(fields) else ""
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
        out: list[tuple[str, Segment | None, int | None]] = []
        for i, r in enumerate(reps, 1):
            if _matches(run, r, path.filters, enc):
                out.append((r, seg, i))
                if not path.every:
                    break
        return out, seg
    if path.every:
        return [(r, seg, i) for i, r in enumerate(reps, 1)], seg
    return [(reps[0], seg, 1)], seg


def _matches(run: _Run, rep: str, filters: tuple[tuple[int, int, bool, str], ...], enc: Encoding) -> bool:
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
                loc = Location(
                    s.name if s else "",
                    s.sequence if s else 1,
                    ctx.rep_field,
                    index,
                    path.component or 1,
                    path.subcomponent,
                )
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
        v = (
            raw or None
            if path.literal
            else _finish(_component(raw, path.component, path.subcomponent, enc), enc, trim)
        )
        if path.segment is None:
            loc = Location(
                s.name if s else "",
                s.sequence if s else 1,
                ctx.rep_field,
                index,
                path.component or 1,
                path.subcomponent,
            )
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
            raw = raw[: raw.index(cs)]
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
            raw = raw[: raw.index(ss)]
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
                    raw = raw[: raw.index(cs)]
                    if not raw:
                        return None
                    if raw == NULL:
                        return CLEAR
                ss = run.ss
                if ss and ss in raw:
                    raw = raw[: raw.index(ss)]
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
            for r in raw.split(rs) if rs and rs in raw else (raw,):
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
                raw = raw[: raw.index(rs)]
                if not raw:
                    return None
            return cell(raw, ci, si, run, trim)

        return read_first

    def read_nth(run: _Run, ctx: _Ctx) -> Any:
        raw = nth_repetition(ctx, seg_id, fno, n, run.rs)
        if raw is None:
            return None
        return cell(raw, ci, si, run, trim)

    return read_nth


def _all_reader(path: Path, trim: bool) -> Callable[[_Run, _Ctx], list[Any]]:
    """A closure giving the values of ``_read_all(run, ctx, path, trim) or [(None, None)]``."""
    if path.field is not None and not (path.literal or path.filters or path.every):
        one = _reader(path, trim)  # at most one repetition: [value], or [None] when absent
        return lambda run, ctx: [one(run, ctx)]
    if path.segment is None:
        one = _reader(path, trim)
        return lambda run, ctx: [one(run, ctx)]

    def read_all(run: _Run, ctx: _Ctx) -> list[Any]:
        return [v for v, _ in _read_all(run, ctx, path, trim)] or [None]

    return read_all


def _where(path: Path, ctx: _Ctx) -> Location:
    """Where a missing value should have been: the segment in view, or its first occurrence."""
    if path.segment is None:
        s = ctx.rep_seg
        return Location(
            s.name if s else "",
            s.sequence if s else 1,
            ctx.rep_field,
            ctx.rep_index,
            path.component or 1,
            path.subcomponent,
        )
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
