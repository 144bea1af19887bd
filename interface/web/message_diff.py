"""The side-by-side diff of a message and its edited copy (the error queue's fix-and-resend
stores the copy with ``parent_id`` = the original), field by field, with the field names of
hl7apy's tables (``pages.field_title``) and the masking rule of ``desk.masking``: a masked field
that differs shows ``•••`` on both sides and says it changed, unless the page was revealed.
"""

from __future__ import annotations

from interface.desk import masking
from interface.web.pages import field_title


def _fields(text: str) -> list[tuple[str, int, list[str]]]:
    """(segment name, its sequence among segments of that name, fields) per segment."""
    segs, enc = masking.segments_and_encoding(text)
    counts: dict[str, int] = {}
    out = []
    for s in segs:
        name, fields = masking.split_fields(s, enc)
        counts[name] = counts.get(name, 0) + 1
        out.append((name, counts[name], fields))
    return out


def field_diff(old_text: str, new_text: str, version: str, reveal: bool) -> list[dict]:
    """Rows ``{id, label, title, old, new, changed, masked}`` for every field set on either side
    (segments paired by name and sequence: ``OBX[2]-5``), in the order of the edited copy."""
    old = {(n, q): f for n, q, f in _fields(old_text)}
    new = _fields(new_text)
    order = [(n, q) for n, q, _ in new] + [k for k in old if k not in {(n, q) for n, q, _ in new}]
    new_map = {(n, q): f for n, q, f in new}
    rows = []
    for name, seq in order:
        a, b = old.get((name, seq), []), new_map.get((name, seq), [])
        for i in range(1, max(len(a), len(b))):
            va = a[i] if i < len(a) else ""
            vb = b[i] if i < len(b) else ""
            if not va and not vb:
                continue
            label, title = field_title(version, name, i)
            hidden = not reveal and masking.masked_field(name, i)
            rows.append(
                {
                    "id": f"{name}{'' if seq == 1 else f'[{seq}]'}-{i}",
                    "label": label,
                    "title": title,
                    "old": masking.MASK if hidden and va else va,
                    "new": masking.MASK if hidden and vb else vb,
                    "changed": va != vb,
                    "masked": hidden,
                }
            )
    return rows
