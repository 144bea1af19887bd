"""Write a chosen MRN into PID-3, in the message's own delimiters (the clerk never edits HL7).

:func:`with_mrn` replaces CX-1 of the PID-3 repetition that is the MRN by the channel's rule
(:class:`interface.hl7.identity.MrnRule`: CX-4 namespace, CX-5 type), keeping its other
components and every other repetition (an SSN, an NHS number...). A message with no such
repetition gets one in front: ``MRN^^^AUTHORITY^MR``. Only the first PID segment is touched;
segments, delimiters and the other fields stay byte for byte as they were.
"""

from __future__ import annotations

from interface.hl7.errors import ParseError
from interface.hl7.identity import MrnRule, split_cx
from interface.hl7.message import _encoding, escape, split_segments, strip_leading


def with_mrn(text: str, mrn: str, rule: MrnRule) -> str:
    """The message ``text`` with ``mrn`` as its MRN in PID-3 (CR-separated output)."""
    mrn = (mrn or "").strip()
    if not mrn:
        raise ValueError("an MRN is required")
    segments = split_segments(strip_leading(text))
    if not segments or not segments[0].startswith("MSH"):
        raise ParseError("message does not start with MSH")
    enc = _encoding(segments[0])
    for i, seg in enumerate(segments):
        if seg[:3] != "PID" or (len(seg) > 3 and seg[3] != enc.field):
            continue
        fields = seg.split(enc.field)
        fields += [""] * (4 - len(fields))
        value = escape(mrn, enc)
        reps = (
            fields[3].split(enc.repetition)
            if enc.repetition and fields[3]
            else ([fields[3]] if fields[3] else [])
        )
        for j, rep in enumerate(reps):
            old, authority, id_type = split_cx(rep, enc)
            if old and rule.matches(authority, id_type):
                comps = rep.split(enc.component) if enc.component else [rep]
                comps[0] = value
                reps[j] = enc.component.join(comps)
                break
        else:
            cx = [value, "", "", escape(rule.authority or "", enc), (rule.types or ("MR",))[0]]
            reps.insert(0, enc.component.join(cx).rstrip(enc.component))
        fields[3] = enc.repetition.join(reps)
        segments[i] = enc.field.join(fields)
        return "\r".join(segments) + "\r"
    raise ParseError("the message has no PID segment to write the MRN into")
