"""What a coded value in a message means: ``F`` in PID-8 is ``Female`` (HL7 table 0001).

Pure: the tables are :class:`interface.rules.code_tables.CodeTables` (the HL7 tables of
``interface.rules.hl7_tables`` with the site's ``rules/code_tables.yaml`` over them), given by the
caller. A field's table comes from ``CodeTables.fields`` (``PID-8``: the first component of every
repetition; ``MSH-9.2``: that component). A code the table does not hold has no meaning (shown
as it is, never guessed); a masked field shows none until revealed (the meaning would tell the
value).
"""

from __future__ import annotations

from dataclasses import dataclass

from interface.rules.code_tables import BUILTIN, CodeTables


@dataclass(frozen=True, slots=True)
class Meaning:
    where: str  # PID-8, MSH-9.2
    code: str
    meaning: str
    table: str  # 0001
    table_name: str  # Administrative Sex


def meaning(tables: CodeTables, table: str, code: str | None) -> str | None:
    """The meaning of ``code`` in ``table`` (exact, else upper-cased), None if unknown."""
    if not code:
        return None
    values = tables.tables.get(table) or {}
    code = code.strip()
    return values.get(code) or values.get(code.upper())


def field_meanings(
    segment: str,
    number: int,
    value: str,
    *,
    repetition: str = "~",
    component: str = "^",
    tables: CodeTables = BUILTIN,
) -> list[Meaning]:
    """The meanings of the coded values in field ``segment-number`` holding ``value`` (one per
    repetition and coded component, in order; empty when the field is not coded or no code is
    known)."""
    seg = segment.upper()
    whole = tables.fields.get(f"{seg}-{number}")
    parts = sorted(
        (int(k.rsplit(".", 1)[1]), t)
        for k, t in tables.fields.items()
        if k.startswith(f"{seg}-{number}.") and k.rsplit(".", 1)[1].isdigit()
    )
    if not value or (whole is None and not parts):
        return []
    out: list[Meaning] = []
    for rep in value.split(repetition) if repetition else [value]:
        comps = rep.split(component) if component else [rep]
        wanted = [(1, whole)] if whole else []
        wanted += [(c, t) for c, t in parts if not (whole and c == 1)]
        for c, table in wanted:
            code = comps[c - 1] if c <= len(comps) else ""
            text = meaning(tables, table, code)
            if text:
                where = f"{seg}-{number}" if (whole and c == 1) else f"{seg}-{number}.{c}"
                out.append(Meaning(where, code.strip(), text, table, tables.names.get(table, "")))
    return out


def annotate(segments: list[dict], tables: CodeTables = BUILTIN) -> list[dict]:
    """The parsed view's segments (``interface.web.pages.parsed_view``) with ``meanings`` set on
    every field: a list of :class:`Meaning`, empty for masked and uncoded fields."""
    for s in segments:
        for f in s["fields"]:
            f["meanings"] = (
                []
                if f.get("masked")
                else field_meanings(
                    s["name"],
                    f["number"],
                    f["value"],
                    repetition=f.get("repsep") or "",
                    component=f.get("compsep") or "",
                    tables=tables,
                )
            )
    return segments
