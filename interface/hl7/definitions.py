"""HL7 v2 segment and data-type definitions, per version, from hl7apy's reference tables.

Pure look-ups, cached: how many fields a segment has, the data type of each field, how many
components that type has and how many subcomponents each component has. ``interface check``
uses them to judge every path a mapping names (``PID-3.4.1``) against the version the mapping
declares (``version:``, default 2.5.1); see :func:`path_problem`.

hl7apy's segment references carry the whole tree: ``(kind, children, datatype, name, table,
length)`` per field, ``children`` the components in the same shape. A ``leaf`` is a primitive
type (ST, ID, NM...), whose only position is the value itself: ``.1`` names it, ``.2`` does not
exist. The type ``varies`` (OBX-5, the value of an observation) can be anything and is not
judged. Z-segments are local by definition and never judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_VERSION = "2.5.1"
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")


@dataclass(frozen=True, slots=True)
class Type:
    """A data type as used at one position: its name and its components (empty: primitive)."""

    name: str
    components: tuple["Type", ...] = ()

    @property
    def varies(self) -> bool:
        return self.name.lower() == "varies"


def versions() -> tuple[str, ...]:
    """The HL7 versions hl7apy has definitions for, oldest first."""
    from hl7apy import SUPPORTED_LIBRARIES

    return tuple(sorted(SUPPORTED_LIBRARIES, key=lambda v: tuple(int(p) for p in v.split("."))))


def known_version(version: str) -> bool:
    return version in versions()


@lru_cache(maxsize=16)
def _library(version: str) -> Any:  # hl7apy's library module (hl7apy has no types)
    from hl7apy import load_library

    return load_library(version)


def _type(ref: Any) -> Type:
    kind, children, datatype = ref[0], ref[1], ref[2]
    comps = tuple(_type(c[1]) for c in children) if kind == "sequence" and children else ()
    return Type(str(datatype or ""), comps)


@lru_cache(maxsize=64)
def segments(version: str) -> frozenset[str]:
    """The segment ids the standard defines in ``version`` (no Z-segments)."""
    return frozenset(s for s in _library(version).SEGMENTS if _SEGMENT_ID.match(s))


@lru_cache(maxsize=4096)
def segment_fields(version: str, segment: str) -> tuple[Type, ...] | None:
    """The fields of a segment, in order (field n is ``[n - 1]``); None if not defined."""
    if segment not in segments(version):
        return None
    ref = _library(version).SEGMENTS[segment]
    out: list[Type] = []
    for child in ref[1]:
        try:
            n = int(str(child[0]).rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        while len(out) < n - 1:  # never seen in hl7apy's tables; keep numbering honest anyway
            out.append(Type("varies"))
        out.append(_type(child[1]))
    return tuple(out)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def path_problem(
    version: str,
    segment: str,
    field: int | None,
    component: int | None = None,
    subcomponent: int | None = None,
    *,
    filters: tuple[tuple[int, int], ...] = (),
) -> str | None:
    """What is wrong with ``SEG-field.component.subcomponent`` in ``version``, or None.

    ``filters``: (component, subcomponent) positions a repetition filter reads
    (``PID-3[CX-5=MR]``), judged like components of the field. Unknown segments are reported
    by the caller (it knows what to suggest); here they are simply not judged."""
    if segment.startswith("Z") or field is None:
        return None
    fields = segment_fields(version, segment)
    if fields is None:
        return None
    label = f"{segment}-{field}"
    if field > len(fields):
        return f"{label}: {segment} has {_count(len(fields), 'field')} in HL7 {version}"
    ftype = fields[field - 1]
    for comp, sub in ((component, subcomponent), *filters):
        if comp is None:
            continue
        where = f"{label}.{comp}" + (f".{sub}" if sub is not None else "")
        problem = type_problem(version, where, label, ftype, comp, sub)
        if problem:
            return problem
    return None


def type_problem(
    version: str, where: str, label: str, ftype: Type, comp: int, sub: int | None = None
) -> str | None:
    """``comp``/``sub`` within a value of type ``ftype`` (the value at ``label``), or None."""
    if ftype.varies:
        return None
    if not ftype.components:
        if comp > 1 or (sub is not None and sub > 1):
            return f"{where}: {label} is {ftype.name}, a primitive type without components in HL7 {version}"
        return None
    if comp > len(ftype.components):
        return (
            f"{where}: {label} is {ftype.name}, which has "
            f"{_count(len(ftype.components), 'component')} in HL7 {version}"
        )
    ctype = ftype.components[comp - 1]
    if sub is None or ctype.varies:
        return None
    clabel = f"{label}.{comp}"
    if not ctype.components:
        if sub > 1:
            return (
                f"{where}: {clabel} is {ctype.name}, a primitive type without subcomponents in HL7 {version}"
            )
        return None
    if sub > len(ctype.components):
        return (
            f"{where}: {clabel} is {ctype.name}, which has "
            f"{_count(len(ctype.components), 'subcomponent')} in HL7 {version}"
        )
    return None


def field_type(version: str, segment: str, field: int | None) -> Type | None:
    """The data type of SEG-n, or None (Z-segment, unknown segment or field, whole segment)."""
    if field is None or segment.startswith("Z"):
        return None
    fields = segment_fields(version, segment)
    if fields is None or field > len(fields):
        return None
    return fields[field - 1]
