"""Identity rules: is the person a message names the person of the chart it is filed to?

Rules are YAML (``rules/identity.yaml``), validated by the typed models below (every problem as
``file:line: message``, as for the completeness rules). For each compared field a *check*:

* ``must_agree`` – after normalisation the two values are equal, else a mismatch;
* ``similar`` – equal, or within ``max_edits`` (Damerau-Levenshtein, so a swapped pair of letters
  is one edit) *and* at least ``min_similarity`` percent alike: a tolerated difference (shown,
  filed); beyond that a mismatch;
* ``note`` – a difference is shown to the clerk but never holds the message;
* ``ignore`` – not compared.

A field is compared only when both the message and the chart have it. Fields: ``family``,
``given`` (names normalised: case, accents, punctuation and spaces; family and given swapped is
the same person; a given name that is the first word of the other's is the same), ``birth_date``
(compared to the shorter precision), ``sex`` (codes and words: F and female agree; U/unknown is
not compared), ``ssn_last4`` (the last four digits of the national id), ``phone`` (any number of
one side agrees with any of the other, on the last seven digits).

``default`` applies to every channel; ``channels: {name: {field: ...}}`` overrides it per field.
``tests`` are examples checked by ``interface check`` (like a mapping's tests): a message
person, a chart person and the expected outcome (``file`` or ``mismatch``).

Everything here is pure. String similarity is rapidfuzz's.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field, model_validator
from rapidfuzz.distance import DamerauLevenshtein
from rapidfuzz.fuzz import token_sort_ratio

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

FIELDS = ("family", "given", "birth_date", "sex", "ssn_last4", "phone")
LABELS = {
    "family": "Family name",
    "given": "Given name",
    "birth_date": "Birth date",
    "sex": "Sex",
    "ssn_last4": "National id (last four)",
    "phone": "Phone",
    "address": "Address",
}
Check = Literal["must_agree", "similar", "note", "ignore"]


class FieldRule(Strict):
    check: Check = "must_agree"
    max_edits: int = Field(2, ge=0, le=10, description="similar: at most this many edits")
    min_similarity: float = Field(70, ge=0, le=100, description="similar: at least this percent alike")


def _default(check: str, **kw) -> Any:
    return Field(default_factory=lambda: FieldRule(check=check, **kw))


class Rule(Strict):
    """How each field is compared (a channel's rule: the default with its overrides)."""

    family: FieldRule = _default("similar", max_edits=2, min_similarity=70)
    given: FieldRule = _default("similar", max_edits=2, min_similarity=60)
    birth_date: FieldRule = _default("must_agree")
    sex: FieldRule = _default("must_agree")
    ssn_last4: FieldRule = _default("must_agree")
    phone: FieldRule = _default("note")


class Overrides(Strict):
    family: FieldRule | None = None
    given: FieldRule | None = None
    birth_date: FieldRule | None = None
    sex: FieldRule | None = None
    ssn_last4: FieldRule | None = None
    phone: FieldRule | None = None


class PersonSpec(Strict):
    """A person in a rules test (the values as a message or a chart gives them)."""

    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    ssn: str | None = None
    phones: list[str] = Field(default_factory=list)


class RuleTest(Strict):
    name: str = Field(min_length=1)
    channel: str | None = None
    message: PersonSpec
    chart: PersonSpec
    expect: Literal["file", "mismatch"]
    mismatched: list[Literal["family", "given", "birth_date", "sex", "ssn_last4", "phone"]] | None = None


class IdentityRules(Strict):
    version: Literal[1] = 1
    default: Rule = Field(default_factory=Rule)
    channels: dict[str, Overrides] = Field(default_factory=dict)
    tests: list[RuleTest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> "IdentityRules":
        seen: set[str] = set()
        for t in self.tests:
            if t.name in seen:
                raise ValueError(f"duplicate test name {t.name!r}")
            seen.add(t.name)
        return self

    def for_channel(self, channel: str | None) -> Rule:
        over = self.channels.get(channel or "")
        if over is None:
            return self.default
        merged = self.default.model_dump()
        merged.update({k: v for k, v in over.model_dump().items() if v is not None})
        return Rule.model_validate(merged)


DEFAULT_RULES = IdentityRules()


def load_rules(path: str | Path) -> IdentityRules:
    """Load and validate an identity rules file; ConfigError lists every problem as file:line."""
    doc = load_yaml(path)
    rules = validate(IdentityRules, doc)
    failed = []
    for i, t in enumerate(rules.tests):
        problem = run_test(rules, t)
        if problem:
            failed.append(f"{doc.where(('tests', i, 'expect'))}: test {t.name!r}: {problem}")
    if failed:
        raise ConfigError(failed)
    return rules


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    problems: list[str] = []
    for p in paths:
        try:
            load_rules(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def run_test(rules: IdentityRules, t: RuleTest) -> str | None:
    """None when the test holds, else what went otherwise (no patient data: field names only)."""
    diffs = compare(_spec(t.message), _spec(t.chart), rules.for_channel(t.channel))
    got = "mismatch" if blocking(diffs) else "file"
    if got != t.expect:
        fields = ", ".join(d.field for d in diffs if d.verdict == "mismatch") or "none"
        return f"expected {t.expect}, got {got} (mismatched: {fields})"
    if t.mismatched is not None:
        found = sorted(d.field for d in diffs if d.verdict == "mismatch")
        if found != sorted(t.mismatched):
            return f"expected mismatched {sorted(t.mismatched)}, got {found}"
    return None


def _spec(p: PersonSpec) -> "Person":
    return Person(
        family=p.family, given=p.given, birth_date=p.birth_date, sex=p.sex, ssn=p.ssn, phones=p.phones
    )


# ---------------------------------------------------------------------------------------------
# people and normalisation


@dataclass
class Person:
    """What identifies a person, on either side (message or chart), as given."""

    family: str | None = None
    given: str | None = None
    middle: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    ssn: str | None = None
    phones: list[str] = field(default_factory=list)
    address: str | None = None
    mrn: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Person":
        d = d or {}
        return cls(
            **{k: d.get(k) for k in cls.__dataclass_fields__ if k != "phones"}, phones=d.get("phones") or []
        )


def norm_name(value: str | None) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: ``O'Brien-Núñez`` ->
    ``obrien nunez``."""
    if not value:
        return ""
    if value.__class__ is str and value.isascii():
        if value.isalpha():  # one plain word (most names): nothing to drop or collapse
            return value.lower()
        text = value.lower()  # ASCII: NFKD leaves it as it is, nothing combines
    else:
        text = unicodedata.normalize("NFKD", str(value))
        text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _NAME_PUNCT.sub(" ", text)
    text = _NAME_OTHER.sub("", text)
    return " ".join(text.split())


_NAME_PUNCT = re.compile(r"[-_/.,]+")
_NAME_OTHER = re.compile(r"[^\w ]+")


def _norm_name_reference(value: str | None) -> str:
    """:func:`norm_name` without its ASCII shortcut (tests compare the two)."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"[-_/.,]+", " ", text)
    text = re.sub(r"[^\w ]+", "", text)
    return " ".join(text.split())


def norm_date(value: str | None) -> str:
    """Digits of a date, at most YYYYMMDD: ``1984-03-12`` and ``19840312`` and ``19840312083000``
    agree; '' when absent or unreadable."""
    digits = re.sub(r"\D", "", str(value or ""))[:8]
    return digits if len(digits) in (4, 6, 8) else ""


_SEX = {
    "f": "F",
    "female": "F",
    "m": "M",
    "male": "M",
    "o": "O",
    "other": "O",
    "a": "A",
    "ambiguous": "A",
    "n": "N",
    "not applicable": "N",
    "x": "X",
}


def norm_sex(value: str | None) -> str:
    """A code (F, M, O, A, N, X); '' for absent or unknown (U), which is not compared."""
    return _SEX.get(" ".join(str(value or "").casefold().replace("_", " ").split()), "")


def last4(value: str | None) -> str:
    digits = re.sub(r"\D", "", str(value or ""))
    return digits[-4:] if len(digits) >= 4 else ""


def norm_phone(value: str | None) -> str:
    digits = re.sub(r"\D", "", str(value or ""))
    return digits[-7:] if len(digits) >= 7 else ""


def similarity(a: str, b: str) -> float:
    """Percent alike (Damerau-Levenshtein, normalised), 0-100."""
    return round(DamerauLevenshtein.normalized_similarity(a, b) * 100, 1)


# ---------------------------------------------------------------------------------------------
# comparison


@dataclass
class Difference:
    """One field where message and chart differ (or, with ``note`` rules, were compared)."""

    field: str
    verdict: str  # mismatch (holds the message), tolerated (filed), noted (shown only)
    why: str  # words for the clerk; never a value

    @property
    def label(self) -> str:
        return LABELS.get(self.field, self.field)

    def as_dict(self) -> dict:
        return {"field": self.field, "label": self.label, "verdict": self.verdict, "why": self.why}


def blocking(diffs: list[Difference]) -> bool:
    return any(d.verdict == "mismatch" for d in diffs)


def _given_agrees(a: str, b: str) -> bool:
    """One given name is the first word(s) of the other (``ana`` and ``ana maria``)."""
    wa, wb = a.split(), b.split()
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    return bool(short) and long_[: len(short)] == short


def _names(rule: Rule, m: Person, c: Person) -> list[Difference]:
    mf, mg, cf, cg = norm_name(m.family), norm_name(m.given), norm_name(c.family), norm_name(c.given)
    straight = _pair(rule, mf, mg, cf, cg)
    if blocking(straight) and mf and mg and cf and cg:
        swapped = _pair(rule, mg, mf, cf, cg)  # the sender wrote the given name first
        if not blocking(swapped):
            return [Difference("family", "tolerated", "family and given name in the other order")] + swapped
    return straight


def _pair(rule: Rule, mf: str, mg: str, cf: str, cg: str) -> list[Difference]:
    out: list[Difference] = []
    for name, a, b in (("family", mf, cf), ("given", mg, cg)):
        fr: FieldRule = getattr(rule, name)
        if fr.check == "ignore" or not a or not b:
            continue
        if a.replace(" ", "") == b.replace(" ", "") or (name == "given" and _given_agrees(a, b)):
            if a != b:
                out.append(Difference(name, "tolerated", "the same name written differently"))
            continue
        out.append(_judge(name, fr, a.replace(" ", ""), b.replace(" ", "")))
    return out


def _judge(name: str, fr: FieldRule, a: str, b: str) -> Difference:
    edits = DamerauLevenshtein.distance(a, b)
    pct = similarity(a, b)
    if fr.check == "note":
        return Difference(name, "noted", f"differs ({pct:g}% alike)")
    if fr.check == "similar" and edits <= fr.max_edits and pct >= fr.min_similarity:
        return Difference(name, "tolerated", f"a small spelling difference ({edits} edit(s), {pct:g}% alike)")
    if fr.check == "similar":
        return Difference(
            name,
            "mismatch",
            f"differs: {edits} edit(s), {pct:g}% alike — more than a spelling slip (the rule lets "
            f"through at most {fr.max_edits} edit(s) and at least {fr.min_similarity:g}% alike)",
        )
    return Difference(name, "mismatch", "differs" + (f" ({edits} edit(s))" if edits <= 2 else ""))


def _exact(name: str, fr: FieldRule, a: str, b: str, what: str) -> Difference | None:
    if fr.check == "ignore" or not a or not b:
        return None
    if name == "birth_date":  # to the shorter precision (a year, a month)
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
    if a == b:
        return None
    if fr.check == "note":
        return Difference(name, "noted", f"{what} differs")
    if fr.check == "similar":
        return _judge(name, fr, a, b)
    return Difference(name, "mismatch", f"{what} differs")


def compare(message: Person, chart: Person, rule: Rule | None = None) -> list[Difference]:
    """The differences between the person a message names and the chart's person, by ``rule``
    (the default rule if None). Fields only one side has are not compared."""
    rule = rule or DEFAULT_RULES.default
    out = _names(rule, message, chart)
    for d in (
        _exact(
            "birth_date",
            rule.birth_date,
            norm_date(message.birth_date),
            norm_date(chart.birth_date),
            "the date",
        ),
        _exact("sex", rule.sex, norm_sex(message.sex), norm_sex(chart.sex), "the administrative sex"),
        _exact("ssn_last4", rule.ssn_last4, last4(message.ssn), last4(chart.ssn), "the last four digits"),
    ):
        if d is not None:
            out.append(d)
    mp = {p for p in map(norm_phone, message.phones) if p}
    cp = {p for p in map(norm_phone, chart.phones) if p}
    if rule.phone.check != "ignore" and mp and cp and not (mp & cp):
        verdict = {"must_agree": "mismatch", "similar": "mismatch", "note": "noted"}[rule.phone.check]
        out.append(Difference("phone", verdict, "no phone number in common"))
    order = {f: i for i, f in enumerate(FIELDS)}
    return sorted(out, key=lambda d: order.get(d.field, 99))


def fields_differ(message: Person, chart: Person) -> dict[str, bool]:
    """Per shown field: do the two sides differ after normalisation (for highlighting)?"""

    def n(f, p):
        return {
            "family": norm_name(p.family).replace(" ", ""),
            "given": norm_name(p.given).replace(" ", ""),
            "birth_date": norm_date(p.birth_date),
            "sex": norm_sex(p.sex),
            "ssn_last4": last4(p.ssn),
            "phone": ",".join(sorted({x for x in map(norm_phone, p.phones) if x})),
        }[f]

    return {f: bool(n(f, message) and n(f, chart) and n(f, message) != n(f, chart)) for f in FIELDS}


# ---------------------------------------------------------------------------------------------
# candidate scoring (the unknown-patient desk)

WEIGHTS = {"family": 25, "given": 15, "birth_date": 25, "sex": 5, "phone": 10, "address": 10, "ssn_last4": 10}


def score(message: Person, candidate: Person) -> tuple[int, list[str]]:
    """How likely ``candidate`` (a chart) is the person ``message`` names: 0-100 and the reasons,
    in words, field by field (no values)."""
    total = possible = 0.0
    reasons: list[str] = []

    def name_pct(a: str, b: str) -> float:
        return round(
            max(similarity(a.replace(" ", ""), b.replace(" ", "")), float(token_sort_ratio(a, b))), 1
        )

    mf, mg = norm_name(message.family), norm_name(message.given)
    cf, cg = norm_name(candidate.family), norm_name(candidate.given)
    if mf and mg and cf and cg and (mf, mg) == (cg, cf) and mf != cf:
        cf, cg = cg, cf
        reasons.append("family and given name in the other order")
    for name, a, b in (("family", mf, cf), ("given", mg, cg)):
        if not a or not b:
            reasons.append(f"{LABELS[name].lower()}: not on both")
            continue
        pct = 100.0 if (name == "given" and _given_agrees(a, b)) else name_pct(a, b)
        possible += WEIGHTS[name]
        total += WEIGHTS[name] * pct / 100
        reasons.append(f"{LABELS[name].lower()}: " + ("same" if pct == 100 else f"{pct:g}% alike"))
    md, cd = norm_date(message.birth_date), norm_date(candidate.birth_date)
    if md and cd:
        possible += WEIGHTS["birth_date"]
        if md == cd:
            total += WEIGHTS["birth_date"]
            reasons.append("birth date: same")
        elif len(md) == len(cd) == 8 and DamerauLevenshtein.distance(md, cd) == 1:
            total += WEIGHTS["birth_date"] * 0.5
            reasons.append("birth date: one digit apart")
        elif md[:4] == cd[:4]:
            total += WEIGHTS["birth_date"] * 0.2
            reasons.append("birth date: same year only")
        else:
            reasons.append("birth date: differs")
    else:
        reasons.append("birth date: not on both")
    ms, cs = norm_sex(message.sex), norm_sex(candidate.sex)
    if ms and cs:
        possible += WEIGHTS["sex"]
        total += WEIGHTS["sex"] if ms == cs else 0
        reasons.append("sex: same" if ms == cs else "sex: differs")
    mp = {p for p in map(norm_phone, message.phones) if p}
    cp = {p for p in map(norm_phone, candidate.phones) if p}
    if mp and cp:
        possible += WEIGHTS["phone"]
        total += WEIGHTS["phone"] if mp & cp else 0
        reasons.append("phone: a number in common" if mp & cp else "phone: none in common")
    ma, ca = norm_name(message.address), norm_name(candidate.address)
    if ma and ca:
        possible += WEIGHTS["address"]
        pct = round(float(token_sort_ratio(ma, ca)), 1)
        total += WEIGHTS["address"] * pct / 100
        reasons.append("address: " + ("same" if pct == 100 else f"{pct:g}% alike"))
    m4, c4 = last4(message.ssn), last4(candidate.ssn)
    if m4 and c4:
        possible += WEIGHTS["ssn_last4"]
        total += WEIGHTS["ssn_last4"] if m4 == c4 else 0
        reasons.append("national id last four: " + ("same" if m4 == c4 else "differs"))
    if possible <= 0:
        return 0, reasons
    # out of what both sides have; a thin match (a name alone) cannot score high
    return round(100 * total / possible * min(1.0, possible / 65)), reasons


# ---------------------------------------------------------------------------------------------
# the person a message names (PID)


def person_from_message(msg) -> Person:
    """The person in a parsed message's first PID (interface.hl7.message.Message); empty if none."""
    pid = msg.first("PID") if msg is not None else None
    if pid is None:
        return Person()
    names = msg.repetitions(pid.raw(5))
    chosen = names[0] if names else ""
    for rep in names:  # the legal name (XPN-7 L) when one is marked
        comps = msg.components(rep)
        if len(comps) >= 7 and comps[6].strip().upper() == "L":
            chosen = rep
            break
    comps = [msg.unescape(c).strip() for c in msg.components(chosen)] + [""] * 3
    ssn = msg.unescape(msg.components(pid.raw(19))[0]).strip() if pid.raw(19) else ""
    mrn = ""
    for rep in msg.repetitions(pid.raw(3)):
        cx = msg.components(rep) + [""] * 5
        if not ssn and cx[4].strip().upper() == "SS":
            ssn = msg.unescape(cx[0]).strip()
        if not mrn and cx[4].strip().upper() == "MR":
            mrn = msg.unescape(cx[0]).strip()
    phones = []
    for fieldno in (13, 14):
        for rep in msg.repetitions(pid.raw(fieldno)):
            xtn = [msg.unescape(c) for c in msg.components(rep)] + [""] * 12
            number = xtn[11] or "".join(xtn[4:7]) or xtn[0]
            if norm_phone(number):
                phones.append(number.strip())
    addr = msg.repetitions(pid.raw(11))
    address = " ".join(msg.unescape(c) for c in msg.components(addr[0])[:5]) if addr and addr[0] else ""
    return Person(
        family=comps[0] or None,
        given=comps[1] or None,
        middle=comps[2] or None,
        birth_date=msg.value("PID", 7) or None,
        sex=msg.value("PID", 8) or None,
        ssn=ssn or None,
        phones=phones,
        address=address.strip() or None,
        mrn=mrn or None,
    )


__all__ = [
    "IdentityRules",
    "Rule",
    "FieldRule",
    "Person",
    "Difference",
    "DEFAULT_RULES",
    "load_rules",
    "check_paths",
    "compare",
    "blocking",
    "score",
    "person_from_message",
    "norm_name",
]
