"""Which PID-3 repetition is the MRN: the identifier of the authority the channel names.

One rule, used by the receive path (the ordering key) and by mappings (the ``mrn`` selector), so
the key a message is ordered by is always the MRN its chart update targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from interface.hl7.message import Encoding, unescape


@dataclass(frozen=True)
class MrnRule:
    """Pick the CX whose CX-4 namespace equals ``authority`` (if set) and whose CX-5 type is in
    ``types`` (if set). With neither set, the first repetition with a value."""

    authority: str | None = None
    types: tuple[str, ...] = ()

    def matches(self, authority: str, id_type: str) -> bool:
        if self.authority and authority.upper() != self.authority.upper():
            return False
        if self.types and id_type.strip().upper() not in self.types:
            return False
        return True


def split_cx(raw: str, enc: Encoding) -> tuple[str, str, str]:
    """(CX-1 id, CX-4.1 namespace, CX-5 type) of one raw repetition, unescaped."""
    cs = enc.component
    if cs and cs in raw:
        comps = raw.split(cs, 5)
        n = len(comps)
        value = comps[0]
        authority = comps[3] if n > 3 else ""
        id_type = comps[4] if n > 4 else ""
        ss = enc.subcomponent
        if ss and ss in authority:
            authority = authority[: authority.index(ss)]
    else:
        value, authority, id_type = raw, "", ""
    esc = enc.escape
    if esc:  # unescape() only when there is an escape to resolve
        if esc in value:
            value = unescape(value, enc)
        if esc in authority:
            authority = unescape(authority, enc)
        if esc in id_type:
            id_type = unescape(id_type, enc)
    return value.strip(), authority.strip(), id_type.strip()


def pick_mrn(field_raw: str, enc: Encoding, rule: MrnRule) -> str | None:
    """The MRN from a raw PID-3 (or MRG-1) field, or None if no repetition matches."""
    reps = field_raw.split(enc.repetition) if enc.repetition else [field_raw]
    for rep in reps:
        value, authority, id_type = split_cx(rep, enc)
        if value and rule.matches(authority, id_type):
            return value
    return None
