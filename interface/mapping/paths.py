"""Field paths (``PID-3[CX-5=MR].1``): parsed once at load into :class:`Path`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from interface.hl7.errors import Location
from interface.hl7.message import Encoding, Segment
from interface.mapping.spec import NULL

_PATH = re.compile(
    r"(?P<seg>[A-Z][A-Z0-9]{2})(?:-(?P<field>\d+)(?:\[(?P<filter>[^\]]*)\])?"
    r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?)?\Z"
)
_RELATIVE = re.compile(r"\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?\Z")
_CONDITION = re.compile(
    r"\s*(?:[A-Z]{2,3}-)?(?P<comp>\d+)(?:\.(?P<sub>\d+))?\s*(?P<op>!=|=)\s*(?P<value>[^,]*?)\s*\Z"
)
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
        return Location(
            self.segment or "",
            seg.sequence if seg is not None else 1,
            self.field,
            repetition,
            self.component,
            self.subcomponent,
        )


def parse_path(text: str) -> Path:
    """Parse ``PID-3[CX-4=HOSP, CX-5=MR].1``, ``PID-5[*]``, ``PID-5[2].1.2``, ``.4.1`` or ``MRG``.

    Raises ValueError with a message for analysts.
    """
    if not isinstance(text, str):
        raise ValueError(f"a path must be text, not {type(text).__name__}")
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        rel_comp, rel_sub = int(m["comp"]), m["sub"]
        if rel_comp < 1 or (rel_sub is not None and int(rel_sub) < 1):
            raise ValueError(f"bad path {text!r}: positions start at 1")
        return Path(t, None, component=rel_comp, subcomponent=int(rel_sub) if rel_sub else None)
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
                    raise ValueError(
                        f"bad filter [{flt}] in {text!r} (expected e.g. [CX-5=MR, CX-4=$authority])"
                    )
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
