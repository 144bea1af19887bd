"""Optional structural validation (``validation: structure`` on a channel), against hl7apy's tables.

The engine calls :func:`structure_validator(text, header)` on the receive path after the type check
and before storing; a non-empty list of :class:`HL7Error` rejects the message (AE/CE: the content
is wrong; one ERR per problem; the raw bytes are stored with status ``rejected``). What is checked, from the HL7 standard's message structures as hl7apy ships them:

* segment order, required segments and groups, repetition limits: ERR-3 ``100``
  (segment sequence error), located at the segment;
* required fields that are empty: ``101`` (required field missing), located at ``SEG-n``.

Z-segments are allowed anywhere. Data types, lengths and table values are not checked (real
senders break them constantly; the mapping reports the values it actually uses).

hl7apy's own ``parse_message(..., VALIDATION_LEVEL.STRICT)`` + ``validate()`` was measured on the
public corpus: it stops at the first problem, raises ``AttributeError`` for message types whose
structure is not ``CODE_TRIGGER`` (ADT^A04 is ADT_A01) and refuses MSH-2 with three characters; so
the structure tables are taken from hl7apy and the walk is done here on our own tokenizer.

Messages whose version hl7apy does not know, or whose structure it cannot determine, are not
judged (an empty list): a structure we cannot name is not proof of a bad message.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from interface.hl7.errors import REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE_ERROR, HL7Error, Location
from interface.hl7.message import Header, split_segments

MAX_PROBLEMS = 10

# HL7 table 0354 (message structure per event) for the events whose structure is not CODE_TRIGGER.
_EVENT_STRUCTURE = {
    "ADT": {
        "A04": "ADT_A01",
        "A08": "ADT_A01",
        "A13": "ADT_A01",
        "A14": "ADT_A05",
        "A28": "ADT_A05",
        "A31": "ADT_A05",
        "A07": "ADT_A06",
        "A10": "ADT_A09",
        "A11": "ADT_A09",
        "A12": "ADT_A12",
        "A22": "ADT_A21",
        "A23": "ADT_A21",
        "A25": "ADT_A21",
        "A26": "ADT_A21",
        "A27": "ADT_A21",
        "A29": "ADT_A21",
        "A32": "ADT_A21",
        "A33": "ADT_A21",
        "A35": "ADT_A30",
        "A36": "ADT_A30",
        "A34": "ADT_A30",
        "A46": "ADT_A30",
        "A47": "ADT_A30",
        "A48": "ADT_A30",
        "A49": "ADT_A30",
        "A40": "ADT_A39",
        "A41": "ADT_A39",
        "A42": "ADT_A39",
        "A44": "ADT_A43",
        "A51": "ADT_A50",
        "A53": "ADT_A52",
        "A55": "ADT_A52",
        "A62": "ADT_A61",
    },
    "MDM": {
        "T03": "MDM_T01",
        "T05": "MDM_T01",
        "T07": "MDM_T01",
        "T09": "MDM_T01",
        "T11": "MDM_T01",
        "T04": "MDM_T02",
        "T06": "MDM_T02",
        "T08": "MDM_T02",
        "T10": "MDM_T02",
    },
}


def _library_version(version: str) -> str | None:
    from hl7apy import SUPPORTED_LIBRARIES

    v = version.strip()
    if v in SUPPORTED_LIBRARIES:
        return v
    return None


@lru_cache(maxsize=512)
def _message_ref(name: str, version: str) -> Any:  # an hl7apy reference tuple (untyped)
    from hl7apy import load_reference
    from hl7apy.exceptions import ChildNotFound

    if not name:
        return None
    try:
        ref = load_reference(name, "Message", version)
    except (ChildNotFound, KeyError, AttributeError):
        return None
    return ref if isinstance(ref, (tuple, list)) and ref and ref[0] in ("sequence", "choice") else None


def structure_for(header: Header) -> tuple[str, object] | None:
    """(structure name, hl7apy reference) for a message, or None when it cannot be determined."""
    version = _library_version(header.version)
    if version is None:
        return None
    code, trigger = header.message_code, header.trigger
    candidates = [
        header.structure,
        f"{code}_{trigger}" if trigger else code,
        _EVENT_STRUCTURE.get(code, {}).get(trigger, ""),
    ]
    if code == "ACK":
        candidates.append("ACK")
    for name in candidates:
        ref = _message_ref(name, version) if name else None
        if ref is not None:
            return name, ref
    return None


_FIRST: dict[int, tuple[object, frozenset[str]]] = {}


def _first_set(ref: Any) -> frozenset[str]:
    """Segment ids that can begin a group (its leading optional children and the first required)."""
    hit = _FIRST.get(id(ref))
    if hit is not None and hit[0] is ref:
        return hit[1]
    out: set[str] = set()
    kind, children = ref[0], ref[1]
    for child in children:
        name, cref, (lo, _hi), typ = child[0], child[1], child[2], child[3]
        out |= {name} if typ == "SEG" else _first_set(cref)
        if kind == "sequence" and lo >= 1:
            break
    result = frozenset(out)
    _FIRST[id(ref)] = (ref, result)  # hl7apy's references are module constants: ids are stable
    return result


def _first_required(ref: Any) -> str | None:
    """The first required segment of a group (where to point ERR-2 when the group is missing)."""
    for child in ref[1]:
        if child[2][0] >= 1:
            return child[0] if child[3] == "SEG" else _first_required(child[1])
    return None


class _Walker:
    def __init__(self, names: list[str], segments: list[str], field_sep: str):
        self.names = names
        self.segments = segments
        self.fs = field_sep
        self.pos = 0
        self.seq: dict[str, int] = {}  # occurrences seen per segment id (ERR location sequence)
        self.problems: list[HL7Error] = []

    def _skip_z(self) -> None:
        while self.pos < len(self.names) and self.names[self.pos].startswith("Z"):
            self._take()

    def _take(self) -> int:
        name = self.names[self.pos]
        self.seq[name] = self.seq.get(name, 0) + 1
        self.pos += 1
        return self.seq[name]

    def _peek(self) -> str | None:
        self._skip_z()
        return self.names[self.pos] if self.pos < len(self.names) else None

    def group(self, ref: Any, context: str) -> int:
        """Match the children of a sequence/choice at the current position; segments consumed."""
        start = self.pos
        kind, children = ref[0], ref[1]
        if kind == "choice":
            nxt = self._peek()
            for child in children:
                if child[0] == nxt or (child[3] == "GRP" and nxt in _first_set(child[1])):
                    self._child(child, context)
                    break
            return self.pos - start
        earlier: set[str] = set()  # segment ids of earlier siblings
        for child in children:
            self._child(child, context, earlier)
            if child[3] == "SEG":
                earlier.add(child[0])
        return self.pos - start

    def _child(self, child: Any, context: str, earlier: frozenset[str] | set[str] = frozenset()) -> None:
        name, cref, (lo, hi), typ = child[0], child[1], child[2], child[3]
        count = 0
        while hi == -1 or count < hi:
            nxt = self._peek()
            if nxt is None:
                break
            if typ == "SEG":
                if nxt != name:
                    break
                sequence = self._take()
                self._fields(name, sequence, cref, self.segments[self.pos - 1])
            else:
                if nxt not in _first_set(cref):
                    break
                if self.group(cref, name) == 0:
                    break
            count += 1
        # hl7apy flattens some optional groups (v2.2 ORM_O01: [{NTE}] [{OBX}] {NTE}, where the
        # standard has [{OBX [{NTE}]}]): a required segment whose id an earlier sibling of the same
        # sequence already allows is treated as optional rather than reported falsely.
        if count < lo and not (typ == "SEG" and name in earlier):
            where = name if typ == "SEG" else _first_required(cref) or name
            what = f"segment {name}" if typ == "SEG" else f"group {name}"
            self._problem(
                HL7Error(
                    f"required {what} missing in {context}",
                    Location(where, self.seq.get(where, 0) + 1),
                    SEGMENT_SEQUENCE_ERROR,
                    reason="missing_field",
                )
            )

    def _fields(self, name: str, sequence: int, ref: Any, segment: str) -> None:
        if ref is None or ref[0] != "sequence":
            return
        parts = segment.split(self.fs)
        for i, fref in enumerate(ref[1], start=1):
            lo = fref[2][0]
            if lo < 1 or (name == "MSH" and i <= 2):
                continue
            idx = i - 1 if name == "MSH" else i  # MSH-1 is the separator itself
            value = parts[idx] if idx < len(parts) else ""
            if not value.strip() or value == '""':
                self._problem(
                    HL7Error(
                        f"{name}-{i} is required",
                        Location(name, sequence, i),
                        REQUIRED_FIELD_MISSING,
                        reason="missing_field",
                    )
                )

    def _problem(self, err: HL7Error) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(err)


def validate_structure(text: str, header: Header) -> list[HL7Error]:
    """Every structural problem (up to MAX_PROBLEMS), in message order; [] when fine or unknown."""
    found = structure_for(header)
    if found is None:
        return []
    name, ref = found
    segments = split_segments(text.lstrip("\ufeff\x00 \t\r\n"))
    names = [s[:3] for s in segments]
    w = _Walker(names, segments, header.encoding.field)
    w.group(ref, name)
    w._skip_z()
    if w.pos < len(names):
        extra = names[w.pos]
        w._problem(
            HL7Error(
                f"segment {extra} is not expected here in {name}",
                Location(extra, w.seq.get(extra, 0) + 1),
                SEGMENT_SEQUENCE_ERROR,
            )
        )
    return w.problems


def structure_validator(text: str, header: Header) -> list[HL7Error]:
    """The engine's validator hook (``Engine.validator``): problems found, never an exception."""
    try:
        return validate_structure(text, header)
    except RecursionError:  # pragma: no cover - hl7apy structures are shallow
        return []
