"""Every path a mapping names, judged against the HL7 definitions of the mapping's version.

Called by :func:`interface.mapping.loader._load` (so ``interface check``, ``interface run`` and a
reload all see the same problems) once the file has been validated against the schema. The
mapping says which version it is written to with ``version:`` (default 2.5.1, the standard the
project builds to); a message of another version is still mapped (a field a 2.3 sender never
fills is simply empty). Reported, each as ``file:line: message``:

* a segment the version does not define (Z-segments are always allowed), with the closest
  defined id as a suggestion (``PDI`` -> ``PID``);
* a field number past the segment's last field (``PID-40`` in 2.5.1, where PID has 39);
* a component past the field's data type (``PID-3.11``: CX has 10), a component of a primitive
  type (``PID-8.2``: IS has none), and a subcomponent past the component's type
  (``PID-3.4.4``: HD has 3) -- relative paths (``.4.1``) inside ``each:``/``select:`` are judged
  against the type of the field they iterate, and repetition filters (``PID-3[CX-5=MR]``) too.

``version:`` may list several versions (``[2.5.1, 2.7]``, a mapping read from senders of both):
a path is fine when any of them defines it. An entry marked ``nonstandard: true`` (a position
senders fill against the standard, such as an HD in EI-2) is not judged, nor are its fields.
Paths the mapping compiler already refused (bad syntax) are not reported twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interface.config.suggest import did_you_mean
from interface.config.yamlfile import Located, PathKey
from interface.hl7 import definitions as hl7defs

if TYPE_CHECKING:
    from interface.mapping.paths import Path

Context = list[tuple[str, str, hl7defs.Type]]  # (source path, version, its type): for ".1"


class _Checker:
    def __init__(self, doc: Located, versions: list[str]):
        self.doc = doc
        self.versions = versions
        self.problems: list[str] = []

    def problem(self, where: PathKey, message: str) -> None:
        line = f"{self.doc.file}:{self.doc.line(where)}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def _first(self, found: list[str | None]) -> str | None:
        """None when some version accepts the path, else the first version's message."""
        if any(m is None for m in found):
            return None
        others = self.versions[1:]
        first = found[0]
        assert first is not None  # no None in found (above)
        return first + (f" (nor in HL7 {', '.join(others)})" if others else "")

    def segment(self, seg: str, where: PathKey) -> bool:
        """False (and a problem) when ``seg`` is a segment of none of the versions."""
        if seg.startswith("Z") or any(seg in hl7defs.segments(v) for v in self.versions):
            return True
        known = set().union(*(hl7defs.segments(v) for v in self.versions))
        self.problem(
            where, f"unknown segment {seg!r} in HL7 {' / '.join(self.versions)}{did_you_mean(seg, known)}"
        )
        return False

    def path(self, text: Any, where: PathKey, context: Context | None, lax: bool) -> Path | None:
        from interface.mapping.paths import parse_path

        try:
            p = parse_path(text)
        except (ValueError, TypeError):
            return None  # reported by the compiler
        if lax:
            return p
        if p.segment is None:
            by_source: dict[str, list[str | None]] = {}
            assert p.component is not None  # a relative path names a component (.1)
            for label, version, ftype in context or ():
                by_source.setdefault(label, []).append(
                    hl7defs.type_problem(
                        version, f"{label}{p.text}", label.split("[")[0], ftype, p.component, p.subcomponent
                    )
                )
            for found in by_source.values():  # every source the block iterates must have it
                msg = None if any(m is None for m in found) else found[0]
                if msg:
                    self.problem(where, msg)
                    break
            return p
        if not self.segment(p.segment, where):
            return p
        filters = tuple((c, s) for c, s, _neg, _v in p.filters)
        msg = self._first(
            [
                hl7defs.path_problem(v, p.segment, p.field, p.component, p.subcomponent, filters=filters)
                for v in self.versions
            ]
        )
        if msg:
            self.problem(where, msg)
        return p

    def paths(self, value: Any, where: PathKey, context: Context | None, lax: bool) -> list[Path | None]:
        if value is None:
            return []
        if isinstance(value, list):
            return [self.path(v, where + (i,), context, lax) for i, v in enumerate(value)]
        return [self.path(value, where, context, lax)]

    def fields(self, specs: list[Any], where: PathKey, context: Context | None, lax: bool = False) -> None:
        for i, fs in enumerate(specs or ()):
            self.field(fs, where + (i,), context, lax)

    def field(self, fs: Any, where: PathKey, context: Context | None, lax: bool) -> None:
        lax = lax or fs.nonstandard
        for key, attr in (("from", "from_"), ("mrn", "mrn"), ("concat", "concat")):
            self.paths(getattr(fs, attr), where + (key,), context, lax)
        if fs.when is not None:
            items = fs.when if isinstance(fs.when, list) else [fs.when]
            for i, w in enumerate(items):
                wh = where + ("when",) + ((i,) if isinstance(fs.when, list) else ())
                self.path(w.field, wh + ("field",), context, lax)
        for i, g in enumerate(fs.group or ()):
            if isinstance(g, str) and len(g) == 3 and g.isalnum() and g.isupper() and not lax:
                self.segment(g, where + ("group", i))
        src_key = "each" if fs.each is not None else "select" if fs.select is not None else None
        if src_key is None:
            return
        sources = self.paths(getattr(fs, src_key), where + (src_key,), context, lax)
        inner: Context = []
        for p in sources:
            if p is None or p.segment is None:  # a relative source: not judged further
                continue
            for v in self.versions:
                ftype = hl7defs.field_type(v, p.segment, p.field)
                if ftype is not None:
                    inner.append((p.text, v, ftype))
        self.fields(fs.fields or [], where + ("fields",), inner, lax)


def check(doc: Located, spec: Any) -> list[str]:
    """Problems of every path in a validated mapping (``MappingSpec``), ``file:line: message``."""
    versions = [str(v).strip() for v in (spec.version if isinstance(spec.version, list) else [spec.version])]
    known = hl7defs.versions()
    bad = [v for v in versions if not hl7defs.known_version(v)]
    if bad or not versions:
        v = bad[0] if bad else ""
        return [
            f"{doc.file}:{doc.line(('version',))}: version: unknown HL7 version {v!r}"
            f"{did_you_mean(v, known)} (known: {', '.join(known)})"
        ]
    c = _Checker(doc, versions)
    if spec.records is not None:
        c.path(spec.records.each, ("records", "each"), None, False)
    c.fields(spec.fields, ("fields",), None)
    return c.problems
