"""Sensitive records: which categories a document falls in, and what a release must leave out.

Pure. The rules are data (``rules/sensitivity.yaml``, every problem reported as
``file:line: message`` and checked by ``interface check``): a list of categories — psychotherapy
notes, substance-use-disorder records under 42 CFR Part 2, HIV, genetic, reproductive health, and
whatever the hospital adds — each with

* ``id`` (lower-case, used by authorizations and the audit trail) and ``label`` (words for clerks);
* ``confidentiality``: TXA-18 codes (HL7 table 0272, v3 Confidentiality ``R``/``V`` or the v3
  sensitivity codes ``PSY``, ``ETH``, ``HIV``...) that put a document in the category;
* ``document_types``: TXA-2 codes (table 0270 or the site's own) that put it there;
* ``release``: why it is held back from a release whose authorization does not name it (words,
  with the rule's legal source), shown to the clerk.

A document is in a category when its confidentiality code OR its type is listed (codes compared
case-insensitively, a coded value ``R^Restricted^HL70272`` by its first component).

* :func:`classify` ``(document_type, confidentiality_code, rules=None) -> frozenset[str]``: the
  category ids a document falls in (empty: not sensitive).
* :func:`excluded_from_release` ``(categories, authorized_categories, rules=None) ->
  list[(category, reason)]``: the categories an authorization does not name, in the file's order,
  each with its ``release`` reason.
* :func:`label` / :func:`labels`: the words for category ids.

``rules=None`` means the default file (``rules/sensitivity.yaml`` when it exists, else the
built-in categories below: the five above, as in the shipped file, which adds one of the hospital's
own, ``very_restricted`` for TXA-18 ``V``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, field_validator, model_validator

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

DEFAULT_FILE = Path("rules/sensitivity.yaml")


class Category(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label: str = Field(min_length=1)
    confidentiality: list[str] = Field(default_factory=list)
    document_types: list[str] = Field(default_factory=list)
    release: str = Field(min_length=1)

    @field_validator("confidentiality", "document_types")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        out = []
        for c in codes:
            c = str(c).strip().upper()
            if not c:
                raise ValueError("an empty code")
            out.append(c)
        return out

    @model_validator(mode="after")
    def _decided(self) -> "Category":
        if not self.confidentiality and not self.document_types:
            raise ValueError(f"category {self.id!r} names no confidentiality code and no document type")
        return self


class SensitivityRules(Strict):
    version: Literal[1] = 1
    categories: list[Category] = Field(default_factory=list)

    @field_validator("categories")
    @classmethod
    def _unique(cls, categories: list[Category]) -> list[Category]:
        seen: set[str] = set()
        for c in categories:
            if c.id in seen:
                raise ValueError(f"duplicate category id {c.id!r}")
            seen.add(c.id)
        return categories

    def by_id(self) -> dict[str, Category]:
        return {c.id: c for c in self.categories}


BUILTIN = SensitivityRules(
    categories=[
        Category(
            id="psychotherapy_notes",
            label="psychotherapy notes",
            confidentiality=["PSYTHPN"],
            document_types=["PSYTX"],
            release="psychotherapy notes are released only under an authorization that names them "
            "(45 CFR 164.508(a)(2))",
        ),
        Category(
            id="substance_use_disorder",
            label="substance use disorder record (42 CFR Part 2)",
            confidentiality=["ETH", "SUD"],
            document_types=["SUD"],
            release="substance use disorder records are released only under a consent that names them "
            "(42 CFR Part 2)",
        ),
        Category(
            id="hiv",
            label="HIV-related information",
            confidentiality=["HIV"],
            release="HIV-related information is released only under an authorization that names it "
            "(state law)",
        ),
        Category(
            id="genetic",
            label="genetic information",
            confidentiality=["GDIS"],
            document_types=["GEN"],
            release="genetic information is released only under an authorization that names it",
        ),
        Category(
            id="reproductive_health",
            label="reproductive health",
            confidentiality=["SEX"],
            release="reproductive health information is released only under an authorization that names "
            "it (45 CFR 164.502(a)(5)(iii))",
        ),
    ]
)


def load_rules(path: str | Path) -> SensitivityRules:
    """Load and validate a rules file; ConfigError lists every problem as ``file:line: message``."""
    return validate(SensitivityRules, load_yaml(path))


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> SensitivityRules:
    return load_rules(path)


def default_rules(path: str | Path | None = DEFAULT_FILE) -> SensitivityRules:
    """The file's rules if it exists (re-read when it changes), else :data:`BUILTIN`."""
    if path is not None and Path(path).is_file():
        return _cached(str(path), Path(path).stat().st_mtime_ns)
    return BUILTIN


def is_rules_file(path: str | Path) -> bool:
    return Path(path).name.startswith("sensitivity")


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    """Every problem in these files (``file:line: message``); empty when all are valid."""
    problems: list[str] = []
    for p in paths:
        try:
            load_rules(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _code(value: str | None) -> str:
    return (value or "").split("^", 1)[0].strip().upper()


def classify(
    document_type: str | None, confidentiality_code: str | None, rules: SensitivityRules | None = None
) -> frozenset[str]:
    """The sensitive categories (ids) of a document with this TXA-2 type and TXA-18 code."""
    rules = rules if rules is not None else default_rules()
    dtype, conf = _code(document_type), _code(confidentiality_code)
    return frozenset(
        c.id
        for c in rules.categories
        if (conf and conf in c.confidentiality) or (dtype and dtype in c.document_types)
    )


def excluded_from_release(
    categories: Iterable[str], authorized_categories: Iterable[str], rules: SensitivityRules | None = None
) -> list[tuple[str, str]]:
    """``(category, reason)`` for each of ``categories`` the authorization does not name, in the
    rules' order (a category the rules no longer know is excluded too, to be safe)."""
    rules = rules if rules is not None else default_rules()
    wanted = set(categories) - set(authorized_categories)
    known = rules.by_id()
    out = [(c.id, c.release) for c in rules.categories if c.id in wanted]
    out += [
        (c, f"{c}: a sensitive category these rules do not know; released only when named")
        for c in sorted(wanted - known.keys())
    ]
    return out


def label(category: str, rules: SensitivityRules | None = None) -> str:
    """The words for one category id (the id itself when the rules do not know it)."""
    rules = rules if rules is not None else default_rules()
    found = rules.by_id().get(category)
    return found.label if found else category.replace("_", " ")


def labels(categories: Iterable[str], rules: SensitivityRules | None = None) -> list[str]:
    """Words for these categories, in the rules' order."""
    rules = rules if rules is not None else default_rules()
    cats = set(categories)
    order = [c.id for c in rules.categories if c.id in cats] + sorted(cats - rules.by_id().keys())
    return [label(c, rules) for c in order]
