"""Chart-abstraction completeness rules: what a clerk checks on every document.

Rules are YAML (``rules/completeness.yaml``), validated by the typed models below; every problem
is reported at once as ``file:line: message``. Three kinds of rule, one per entry:

* ``require: [field, ...]`` – the fields must be present (``author``, ``authenticated_by``,
  ``authenticated_at``, ``activity_at``, ``origination_at``, ``visit_number``, ``content``...);
* ``requires_document: {type: [...], scope: visit|patient}`` – another live document of one of
  these types must exist for the same visit (or patient) – e.g. a consent before an operation;
* ``overdue_after_days: N`` (``from: origination_at``) – the document is overdue N days after that
  date while the rule's ``when`` still holds (e.g. status not yet AU/LA). Stored with a ``due_at``
  and shown only once ``now`` has passed it, so "overdue" is computed at read time.

``when`` narrows a rule to document types / statuses / availabilities (``status_not`` for
"unsigned"). Cancelled (CA) and obsolete (OB) documents have no deficiencies.

Chart completion (docs/deficiencies.md): every rule names who must fix its findings,
``responsible: author | authenticator | attending`` (default ``author``); when that person is not
on the document (or its visit), the others are tried in the order author, authenticator,
attending (:func:`assign`). A finding is open from its rule's ``from`` date (else the document's
creation) and ages into the buckets ``0-7``, ``8-14``, ``15-30``, ``over 30`` days; past the
file's ``bylaws_days`` (default 30) it is delinquent (:func:`age`, with an injected ``now``).

:func:`evaluate` is pure; :func:`replace_findings` and :func:`list_deficiencies` read and write the
``document_deficiencies`` worklist in the caller's transaction.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field, field_validator, model_validator

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

FieldName = Literal[
    "author",
    "authenticated_by",
    "authenticated_at",
    "activity_at",
    "origination_at",
    "transcribed_at",
    "transcriptionist",
    "visit_number",
    "type",
    "status",
    "confidentiality",
    "availability",
    "content",
]
DateField = Literal["origination_at", "activity_at", "transcribed_at", "created_at"]
Responsible = Literal["author", "authenticator", "attending"]
RESPONSIBLE_ORDER: tuple[str, ...] = ("author", "authenticator", "attending")
BUCKETS: tuple[str, ...] = ("0-7", "8-14", "15-30", "over 30")
DEFAULT_BYLAWS_DAYS = 30
ROLE_LABELS = {"author": "author", "authenticator": "authenticator", "attending": "attending doctor"}

FIELD_LABELS = {
    "author": "author (TXA-9)",
    "authenticated_by": "authenticator (TXA-22)",
    "authenticated_at": "authentication time (TXA-22)",
    "activity_at": "activity date/time (TXA-4)",
    "origination_at": "origination date/time (TXA-6)",
    "transcribed_at": "transcription date/time (TXA-7)",
    "transcriptionist": "transcriptionist (TXA-11)",
    "visit_number": "visit number (PV1-19)",
    "type": "document type (TXA-2)",
    "status": "completion status (TXA-17)",
    "confidentiality": "confidentiality (TXA-18)",
    "availability": "availability (TXA-19)",
    "content": "document content (OBX-5)",
}
INACTIVE = ("CA", "OB")  # cancelled, obsolete: not part of the chart any more


class When(Strict):
    """Which documents a rule applies to (all given conditions must hold; codes case-insensitive)."""

    type: list[str] | None = None
    type_not: list[str] | None = None
    status: list[str] | None = None
    status_not: list[str] | None = None
    availability: list[str] | None = None

    def matches(self, entry: dict) -> bool:
        def code(name: str) -> str:
            return (entry.get(name) or "").strip().upper()

        def within(name: str, values: list[str] | None, negate: bool = False) -> bool:
            if values is None:
                return True
            inside = code(name) in {v.strip().upper() for v in values}
            return not inside if negate else inside

        return (
            within("type", self.type)
            and within("type", self.type_not, True)
            and within("status", self.status)
            and within("status", self.status_not, True)
            and within("availability", self.availability)
        )


class RequiresDocument(Strict):
    type: list[str] = Field(min_length=1)
    scope: Literal["visit", "patient"] = "visit"


class Rule(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    when: When | None = None
    require: list[FieldName] | None = Field(default=None, min_length=1)
    requires_document: RequiresDocument | None = None
    overdue_after_days: float | None = Field(default=None, ge=0)
    from_: DateField = Field(default="origination_at", alias="from")
    responsible: Responsible = "author"

    @model_validator(mode="after")
    def _one_kind(self) -> "Rule":
        kinds = [
            k for k in ("require", "requires_document", "overdue_after_days") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a rule needs exactly one of require, requires_document, overdue_after_days"
                + (f" (found {', '.join(kinds)})" if kinds else "")
            )
        return self


class CompletenessRules(Strict):
    version: Literal[1] = 1
    bylaws_days: float = Field(default=DEFAULT_BYLAWS_DAYS, gt=0)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return rules


def load_rules(path: str | Path) -> CompletenessRules:
    """Load and validate a rules file; ConfigError lists every problem as ``file:line: message``."""
    doc = load_yaml(path)
    return validate(CompletenessRules, doc)


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    """Every problem in these rules files (``file:line: message``); empty when all are valid."""
    problems: list[str] = []
    for p in paths:
        try:
            load_rules(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


# ---------------------------------------------------------------------------------------------
# evaluation (pure)


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp/date (or HL7 DTM) as an aware datetime; naive values are taken as UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d{8}(\d{2}){0,3}(\.\d+)?([+-]\d{4})?", text):
        digits = re.match(r"\d+", text).group(0)
        fmt = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}[len(digits)]
        dt = datetime.strptime(digits, fmt)
        off = re.search(r"([+-])(\d{2})(\d{2})$", text)
        if off:
            sign = 1 if off.group(1) == "+" else -1
            dt = dt.replace(
                tzinfo=timezone(sign * timedelta(hours=int(off.group(2)), minutes=int(off.group(3))))
            )
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _present(entry: dict, name: str) -> bool:
    if name == "content":
        return bool(entry.get("content_sha256") or entry.get("content_reference"))
    value = entry.get(name)
    if isinstance(value, dict):
        return any(v for v in value.values())
    return bool(value and str(value).strip())


def evaluate(rules: CompletenessRules | None, entry: dict, related: list[dict]) -> list[dict]:
    """Findings for one document entry: ``[{rule, message, due_at}]`` (``due_at`` ISO or None).

    ``related`` are the other entries in the same patient's chart (any visit); the consent rule
    picks those of the same visit itself. Inactive (cancelled/obsolete) documents have none.
    """
    if rules is None or (entry.get("availability") or "").upper() in INACTIVE:
        return []
    findings: list[dict] = []
    for rule in rules.rules:
        if rule.when is not None and not rule.when.matches(entry):
            continue
        before = len(findings)
        _evaluate_rule(rule, entry, related, findings)
        start = parse_time(entry.get(rule.from_)) or parse_time(entry.get("created_at"))
        for f in findings[before:]:
            f["responsible"] = rule.responsible
            f["started_at"] = start.astimezone(timezone.utc).isoformat() if start else None
    return findings


def _evaluate_rule(rule: Rule, entry: dict, related: list[dict], findings: list[dict]) -> None:
    if rule.require is not None:
        missing = [n for n in rule.require if not _present(entry, n)]
        if missing:
            findings.append(
                {
                    "rule": rule.id,
                    "due_at": None,
                    "message": f"{rule.description}: missing " + ", ".join(FIELD_LABELS[n] for n in missing),
                }
            )
    elif rule.requires_document is not None:
        wanted = {t.strip().upper() for t in rule.requires_document.type}
        same_visit = rule.requires_document.scope == "visit"
        visit = entry.get("visit_number")
        if same_visit and not visit:
            findings.append(
                {
                    "rule": rule.id,
                    "due_at": None,
                    "message": f"{rule.description}: no visit number to look for " + "/".join(sorted(wanted)),
                }
            )
            return
        found = any(
            (o.get("type") or "").strip().upper() in wanted
            and (o.get("availability") or "").upper() not in INACTIVE
            and o.get("document_number") != entry.get("document_number")
            and (not same_visit or o.get("visit_number") == visit)
            for o in related
        )
        if not found:
            findings.append(
                {
                    "rule": rule.id,
                    "due_at": None,
                    "message": f"{rule.description}: no {'/'.join(sorted(wanted))} "
                    f"document for this {rule.requires_document.scope}",
                }
            )
    else:
        start = parse_time(entry.get(rule.from_)) or parse_time(entry.get("created_at"))
        if start is None:
            return
        due = start + timedelta(days=rule.overdue_after_days or 0)
        findings.append(
            {
                "rule": rule.id,
                "due_at": due.astimezone(timezone.utc).isoformat(),
                "message": f"{rule.description}: over {rule.overdue_after_days:g} days "
                f"since {FIELD_LABELS.get(rule.from_, rule.from_)}",
            }
        )


def visible(findings: list[dict], now: datetime) -> list[dict]:
    """The findings that apply at ``now``: untimed ones, and timed ones whose ``due_at`` has passed."""
    out = []
    for f in findings:
        due = parse_time(f.get("due_at"))
        if due is None or due <= now:
            out.append(f)
    return out


# ---------------------------------------------------------------------------------------------
# chart completion: who fixes a finding, how old it is (pure)


def person_name(person: Any) -> str | None:
    """``FAMILY, GIVEN`` (or whichever part there is) of a person dict, else None."""
    if not isinstance(person, dict):
        return None
    family, given = (person.get("family") or "").strip(), (person.get("given") or "").strip()
    return ", ".join(p for p in (family, given) if p) or None


def _person_present(person: Any) -> bool:
    return isinstance(person, dict) and bool((person.get("id") or "").strip() or person_name(person))


def assign(preferred: str, entry: dict, attending: dict | None = None) -> dict | None:
    """The clinician responsible for a finding: ``{role, id, name}`` or None when nobody is named.

    ``preferred`` (the rule's ``responsible``) first, then the others in the order author,
    authenticator (TXA-22), attending doctor (PV1-7 of the document's visit, ``attending``)."""
    people = {
        "author": entry.get("author"),
        "authenticator": entry.get("authenticated_by"),
        "attending": attending,
    }
    for role in (preferred, *[r for r in RESPONSIBLE_ORDER if r != preferred]):
        person = people.get(role)
        if _person_present(person):
            pid = (person.get("id") or "").strip() or None
            return {"role": role, "id": pid, "name": person_name(person)}
    return None


def bucket(days: int) -> str:
    """The age bucket of a finding open ``days`` whole days: 0-7, 8-14, 15-30, over 30."""
    if days <= 7:
        return "0-7"
    if days <= 14:
        return "8-14"
    if days <= 30:
        return "15-30"
    return "over 30"


def age(started: Any, now: datetime, bylaws_days: float = DEFAULT_BYLAWS_DAYS) -> dict:
    """``{days, bucket, delinquent}`` of a finding open since ``started`` (ISO or datetime) at
    ``now``; delinquent once open more than ``bylaws_days``. An unknown start counts as today."""
    start = parse_time(started)
    seconds = max(0.0, (now - start).total_seconds()) if start is not None else 0.0
    days = int(seconds // 86400)
    return {"days": days, "bucket": bucket(days), "delinquent": seconds > bylaws_days * 86400}


# ---------------------------------------------------------------------------------------------
# the worklist table


__all__ = [
    "CompletenessRules",
    "Rule",
    "When",
    "RequiresDocument",
    "load_rules",
    "check_paths",
    "evaluate",
    "visible",
    "assign",
    "age",
    "bucket",
    "person_name",
    "BUCKETS",
]
