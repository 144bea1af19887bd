"""A batch of plain scalars (``batch._Batch``) as one straight-line Python function.

An interpreting loop over the batch would work out per message which source each read takes,
which component, whether to trim and what an empty value means. All of that is known when the
mapping is loaded, so :func:`compile_batch` writes the reads out for the one batch — a local per
source (split into components at most once, on first use), one block per read with its
component and subcomponent numbers as constants, the transforms and setters bound by name — and
compiles it once. The text is built here from the batch's numbers alone, segment ids as Python
literals (``repr``) and attribute names only when they are identifiers; every other value
(transforms, setters, defaults, separators) is passed in the namespace, never written into the
code. tests/test_mapping_speed_equivalence.py checks ``Mapping.apply`` (these functions)
against the reference interpreter on mutated messages.
"""

from __future__ import annotations

import keyword
from typing import Any, Callable

from interface.hl7.message import unescape
from interface.mapping import records, transforms
from interface.mapping.spec import NULL


def _load(i: int, seg_id: str | None, fno: int, n: int) -> list[str]:
    """Lines setting ``c{i}`` to the components of the source's repetition (None: no value,
    NULL_REP: the HL7 null), as ``reader.nth_repetition`` reads it."""
    c = f"c{i}"
    if seg_id is None:
        head = ["raw = ctx.rep"]
    else:
        head = [
            "raw = None",
            f"segs = ctx_segs.get({seg_id!r})",
            "if segs:",
            "    fields = segs[0].fields",
            f"    if {fno} < len(fields):",
            f"        raw = fields[{fno}]",
            "        if raw and rs and rs in raw:",
            "            reps = raw.split(rs)",
            f"            raw = reps[{n - 1}] if {n} <= len(reps) else None",
        ]
        if n != 1:
            head += ["        elif raw:", "            raw = None"]
    return head + [
        "if not raw:",
        f"    {c} = None",
        "elif raw == NULL:",
        f"    {c} = NULL_REP",
        "else:",
        f"    {c} = raw.split(cs) if cs and cs in raw else (raw,)",
    ]


def _read(target: str, sources: tuple[Any, ...], i: int, ci: int, si: int, trim: bool) -> list[str]:
    """Lines setting ``target`` from component ``ci``, subcomponent ``si`` of source ``i`` (left
    as it is when that has no value), as ``reader._cell`` reads."""
    c = f"c{i}"
    if si == 1:
        sub = ["if ss and ss in raw:", "    raw = raw[: raw.index(ss)]"]
    else:
        sub = [
            "if ss and ss in raw:",
            f"    parts = raw.split(ss, {si})",
            f'    raw = parts[{si - 1}] if len(parts) >= {si} else ""',
            "else:",
            '    raw = ""',
        ]
    tail = [
        "if raw == NULL:",
        f"    {target} = CLEAR",
        "elif raw:",
        "    if esc and esc in raw:",
        "        raw = unescape(raw, enc)",
    ]
    if trim:
        tail.append("    raw = raw.strip()")
    tail += ["    if raw:", f"        {target} = raw"]
    return [
        f"if {c} is MISSING:",
        *_indent(_load(i, *sources[i]), 1),
        f"if {c} is not None:",
        f"    if {c} is NULL_REP:",
        f"        {target} = CLEAR",
        f"    elif len({c}) >= {ci}:",
        f"        raw = {c}[{ci - 1}]",
        "        if raw:",
        "            if raw == NULL:",
        f"                {target} = CLEAR",
        "            else:",
        *_indent(sub + tail, 4),
    ]


def _indent(lines: list[str], n: int) -> list[str]:
    pad = "    " * n
    return [pad + line for line in lines]


def compile_batch(
    sources: tuple[Any, ...], items: tuple[Any, ...], missing: object, null_rep: object
) -> Callable[[Any, Any, Any], bool]:
    """The batch's ``run(run, ctx, obj) -> touched`` as one compiled function (module docstring).
    ``sources`` and ``items`` as ``_Batch`` holds them."""
    ns: dict[str, Any] = {
        "MISSING": missing,
        "NULL_REP": null_rep,
        "CLEAR": records.CLEAR,
        "NULL": NULL,
        "unescape": unescape,
        "BadValue": transforms.BadValue,
    }
    body = [
        "rs = run.rs",
        "cs = run.cs",
        "ss = run.ss",
        "esc = run.esc",
        "enc = run.enc",
        "ctx_segs = ctx.segs",
        *(f"c{i} = MISSING" for i in range(len(sources))),
        "touched = False",
    ]
    for k, (reads, concat, default, steps, name, setter, slow) in enumerate(items):
        body.append("value = None")
        for j, (i, ci, si, trim) in enumerate(reads):
            block = _read("value", sources, i, ci, si, trim)
            body += block if j == 0 else ["if value is None:", *_indent(block, 1)]
        if concat is not None:
            creads, keep_empty, sep = concat
            ns[f"SEP{k}"] = sep
            block = ["parts = []", "nulls = 0"]
            for i, ci, si, trim in creads:
                block += ["v = None", *_read("v", sources, i, ci, si, trim)]
                block += [
                    "if v is None or v is CLEAR:",
                    "    if v is not None:",
                    "        nulls += 1",
                    *(['    parts.append("")'] if keep_empty else []),
                    "else:",
                    "    parts.append(v)",
                ]
            block += [
                'while parts and parts[-1] == "":',
                "    parts.pop()",
                "if parts:",
                f"    value = SEP{k}.join(parts)",
                "elif nulls:",
                "    value = CLEAR",
            ]
            body += ["if value is None:", *_indent(block, 1)]
        if default is not None:
            ns[f"D{k}"] = default
            body += ["if value is None:", f"    value = run.param(D{k})"]
        then: list[str] = []
        if steps:
            for s, step in enumerate(steps):
                ns[f"S{k}_{s}"] = step
            ns[f"SLOW{k}"] = slow
            then += [
                "if value is not CLEAR:",
                "    try:",
                *(f"        value = S{k}_{s}(value, run)" for s in range(len(steps))),
                "    except BadValue:",
                f"        SLOW{k}(run, ctx, obj)  # raises DataError with the value's Location",
                "        raise",
            ]
        if name is not None and name.isidentifier() and not keyword.iskeyword(name):
            then.append(f"obj.{name} = value")
        elif name is not None:
            ns[f"N{k}"] = name
            then.append(f"setattr(obj, N{k}, value)")
        else:
            ns[f"SET{k}"] = setter
            then.append(f"SET{k}(obj, value)")
        then.append("touched = True")
        body += ["if value is not None:", *_indent(then, 1)]
    body.append("return touched")
    src = "def batch_run(run, ctx, obj):\n" + "\n".join(_indent(body, 1)) + "\n"
    exec(compile(src, "<mapping batch>", "exec"), ns)  # noqa: S102 - text built above from numbers and names
    fn: Callable[[Any, Any, Any], bool] = ns["batch_run"]
    fn.source = src  # type: ignore[attr-defined]  # for reading it when debugging
    return fn
