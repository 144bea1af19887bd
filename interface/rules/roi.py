"""Release-of-information rules (``rules/roi.yaml``): due dates, fees, when an authorization is
needed and whether one is complete, and what an accounting of disclosures leaves out.

Pure functions over dates and dicts; :mod:`interface.desk.roi` applies them.

* **Due dates** (45 CFR 164.524(b)(2)): ``due.default_days`` (30) after the request was received,
  or the days for its requester type (``due.by_requester_type``), or a state's own
  (``due.states: {CA: {default_days: 15, by_requester_type: {...}}}``). One extension of
  ``due.extension_days`` (30) is allowed (``due.max_extensions``), always with a reason.
* **Fees**: electronic copies (secure download, e-mail) a flat fee; paper (pickup, mail) a base
  plus a price per page, and postage by mail; none for the ``free_purposes`` (continuity of care,
  treatment) or ``free_requester_types``; ``fees.by_requester_type`` overrides any amount.
  Amounts are kept in cents.
* **Legal basis**: ``legal_basis`` is a list of ``{requester_types, purposes, basis}``; the first
  that matches a request is the basis it is disclosed under without an authorization (treatment,
  payment, operations, the individual's own access, a court order, required by law...). None
  matches: an authorization is needed (45 CFR 164.508).
* **Authorization**: :func:`authorization_problems` names every missing 164.508(c) element
  (``authorization.required_elements``), an expiry date passed, an expiring event that happened,
  a revocation, and a missing signed form.
* **Accounting** (45 CFR 164.528): :func:`accountable` drops the disclosures whose basis is in
  ``accounting.exclude_bases`` (treatment, payment, operations, to the individual, with an
  authorization...); :func:`accounting_period` refuses a period longer than ``accounting.years``
  (six) before the date asked.
* **Delivery**: a release for secure download or e-mail makes a download link that works for
  ``delivery.link_days`` (14) days; a clerk may make one last at most ``delivery.max_link_days``.

Every setting has a default: a site without the file gets the federal rules.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field, field_validator

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

DEFAULT_FILE = Path("rules/roi.yaml")

REQUESTER_TYPES = {
    "patient": "Patient",
    "personal_representative": "Personal representative",
    "provider": "Provider",
    "payer": "Payer",
    "attorney": "Attorney",
    "court_order": "Court order or subpoena",
    "law_enforcement": "Law enforcement",
    "public_health": "Public health",
    "other": "Other",
}
PURPOSES = {
    "personal": "Personal use",
    "continuity_of_care": "Continuity of care",
    "treatment": "Treatment",
    "payment": "Payment",
    "operations": "Health care operations",
    "legal": "Legal",
    "insurance": "Insurance",
    "disability": "Disability determination",
    "court": "Court proceeding",
    "law_enforcement": "Law enforcement",
    "public_health": "Public health",
    "research": "Research",
    "other": "Other",
}
DELIVERIES = {
    "pickup": "Pickup (paper)",
    "mail": "Mail (paper)",
    "secure_download": "Secure download",
    "email": "E-mail",
}
ELECTRONIC = ("secure_download", "email")
BASES = {
    "authorization": "Patient authorization (45 CFR 164.508)",
    "individual_access": "The individual's right of access (45 CFR 164.524)",
    "treatment": "Treatment (45 CFR 164.506)",
    "payment": "Payment (45 CFR 164.506)",
    "operations": "Health care operations (45 CFR 164.506)",
    "court_order": "Court order or subpoena (45 CFR 164.512(e))",
    "required_by_law": "Required by law (45 CFR 164.512(a))",
    "public_health": "Public health (45 CFR 164.512(b))",
    "law_enforcement": "Law enforcement (45 CFR 164.512(f))",
    "health_oversight": "Health oversight (45 CFR 164.512(d))",
}
# The core elements and required statements of a valid authorization (45 CFR 164.508(c)).
ELEMENTS = {
    "description": "A description of the information to be disclosed",
    "discloser": "Who may make the disclosure",
    "recipient": "To whom the information may be disclosed",
    "purpose": "The purpose of the disclosure",
    "expiration": "An expiration date or event",
    "signature": "The individual's signature and the date",
    "representative_authority": "The representative's authority to sign (when a representative signs)",
    "revocation_statement": "The statement of the right to revoke in writing",
    "conditioning_statement": "The statement that treatment is not conditioned on signing",
    "redisclosure_statement": "The statement that disclosed information may be redisclosed",
    "signed_form": "The signed form (uploaded PDF or image)",
}
# How a requester's identity and authority are verified (45 CFR 164.514(h)): the checks a clerk
# ticks; ``identity.required`` names the ones each requester type needs.
IDENTITY_CHECKS = {
    "photo_id": "Government photo ID seen",
    "birth_date": "Birth date matches the chart",
    "address": "Address matches the chart",
    "representative_authority": "Authority to act for the patient (power of attorney, guardianship, parent)",
    "organization": "Organisation verified (letterhead, NPI, call back to a known number)",
    "court_document": "Court order signed by a judge, or subpoena with the required assurances",
    "official_credentials": "Official credentials (badge, agency letter) seen",
}


def _default_identity() -> dict[str, list[str]]:
    return {
        "patient": ["photo_id", "birth_date"],
        "personal_representative": ["photo_id", "representative_authority"],
        "provider": ["organization"],
        "payer": ["organization"],
        "attorney": ["organization"],
        "court_order": ["court_document"],
        "law_enforcement": ["official_credentials"],
        "public_health": ["official_credentials"],
        "other": ["photo_id"],
    }


STATUSES = {
    "received": "Received",
    "verifying": "Verifying",
    "in_progress": "In progress",
    "ready": "Ready",
    "released": "Released",
    "denied": "Denied",
    "withdrawn": "Withdrawn",
}
OPEN = ("received", "verifying", "in_progress", "ready")
# status -> the statuses a clerk may move it to (release and deny have their own checks)
TRANSITIONS = {
    "received": ("verifying", "denied", "withdrawn"),
    "verifying": ("in_progress", "received", "denied", "withdrawn"),
    "in_progress": ("ready", "verifying", "denied", "withdrawn"),
    "ready": ("released", "in_progress", "denied", "withdrawn"),
    "released": ("released",),  # releasing again makes a new packet
    "denied": (),
    "withdrawn": (),
}


class DueDays(Strict):
    default_days: int = Field(30, ge=1, le=366)
    by_requester_type: dict[str, int] = Field(default_factory=dict)

    @field_validator("by_requester_type")
    @classmethod
    def _days(cls, v: dict[str, int]) -> dict[str, int]:
        _known(list(v), REQUESTER_TYPES, "requester type")
        for k, d in v.items():
            if not 1 <= d <= 366:
                raise ValueError(f"{k}: days must be between 1 and 366")
        return v


class DueSettings(DueDays):
    extension_days: int = Field(30, ge=1, le=366)
    max_extensions: int = Field(1, ge=0, le=5)
    states: dict[str, DueDays] = Field(default_factory=dict, description="state code -> its own days")


class FeeAmounts(Strict):
    electronic_flat: Decimal | None = Field(None, ge=0)
    paper_base: Decimal | None = Field(None, ge=0)
    paper_per_page: Decimal | None = Field(None, ge=0)
    mail_postage: Decimal | None = Field(None, ge=0)


class FeeSettings(Strict):
    currency: str = "USD"
    electronic_flat: Decimal = Field(Decimal("6.50"), ge=0)
    paper_base: Decimal = Field(Decimal("0"), ge=0)
    paper_per_page: Decimal = Field(Decimal("0.25"), ge=0)
    mail_postage: Decimal = Field(Decimal("0"), ge=0)
    free_purposes: list[str] = Field(default_factory=lambda: ["continuity_of_care", "treatment"])
    free_requester_types: list[str] = Field(default_factory=list)
    by_requester_type: dict[str, FeeAmounts] = Field(default_factory=dict)

    @field_validator("free_purposes")
    @classmethod
    def _purposes(cls, v: list[str]) -> list[str]:
        return _known(v, PURPOSES, "purpose")

    @field_validator("free_requester_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        return _known(v, REQUESTER_TYPES, "requester type")

    @field_validator("by_requester_type")
    @classmethod
    def _fee_types(cls, v: dict[str, FeeAmounts]) -> dict[str, FeeAmounts]:
        _known(list(v), REQUESTER_TYPES, "requester type")
        return v


class BasisRule(Strict):
    requester_types: list[str] = Field(min_length=1)
    purposes: list[str] = Field(default_factory=list, description="only for these purposes (empty: any)")
    basis: str

    @field_validator("requester_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        return _known(v, REQUESTER_TYPES, "requester type")

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, v: list[str]) -> list[str]:
        return _known(v, PURPOSES, "purpose")

    @field_validator("basis")
    @classmethod
    def _basis(cls, v: str) -> str:
        if v == "authorization":
            raise ValueError("basis: 'authorization' is what applies when no rule matches")
        return _known([v], BASES, "legal basis")[0]


def _default_bases() -> list[BasisRule]:
    return [
        BasisRule(requester_types=["patient", "personal_representative"], basis="individual_access"),
        BasisRule(
            requester_types=["provider"], purposes=["treatment", "continuity_of_care"], basis="treatment"
        ),
        BasisRule(requester_types=["payer"], purposes=["payment"], basis="payment"),
        BasisRule(requester_types=["court_order"], basis="court_order"),
        BasisRule(requester_types=["public_health"], basis="public_health"),
        BasisRule(requester_types=["law_enforcement"], basis="required_by_law"),
    ]


class AuthorizationSettings(Strict):
    required_elements: list[str] = Field(default_factory=lambda: list(ELEMENTS))

    @field_validator("required_elements")
    @classmethod
    def _elements(cls, v: list[str]) -> list[str]:
        return _known(v, ELEMENTS, "element")


class IdentitySettings(Strict):
    required: dict[str, list[str]] = Field(default_factory=_default_identity)

    @field_validator("required")
    @classmethod
    def _checks(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        _known(list(v), REQUESTER_TYPES, "requester type")
        for checks in v.values():
            _known(checks, IDENTITY_CHECKS, "identity check")
        return v


class AccountingSettings(Strict):
    years: int = Field(6, ge=1, le=10)
    exclude_bases: list[str] = Field(
        default_factory=lambda: ["treatment", "payment", "operations", "individual_access", "authorization"]
    )

    @field_validator("exclude_bases")
    @classmethod
    def _bases(cls, v: list[str]) -> list[str]:
        return _known(v, BASES, "legal basis")


class DeliverySettings(Strict):
    """Download links for electronic delivery (secure download, e-mail)."""

    link_days: int = Field(14, ge=1, le=366, description="a new download link works for this many days")
    max_link_days: int = Field(90, ge=1, le=366, description="the longest a clerk may make a link last")


class RoiSettings(Strict):
    version: Literal[1] = 1
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    due: DueSettings = Field(default_factory=DueSettings)
    fees: FeeSettings = Field(default_factory=FeeSettings)
    legal_basis: list[BasisRule] = Field(default_factory=_default_bases)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    authorization: AuthorizationSettings = Field(default_factory=AuthorizationSettings)
    accounting: AccountingSettings = Field(default_factory=AccountingSettings)


def _known(values: list[str], known: dict, what: str) -> list[str]:
    for v in values:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r} (one of {', '.join(known)})")
    return values


def load_settings(path: str | Path) -> RoiSettings:
    """Load and validate ``rules/roi.yaml``; ConfigError lists every problem as ``file:line: message``."""
    return validate(RoiSettings, load_yaml(path))


def settings_or_default(path: str | Path | None = DEFAULT_FILE) -> RoiSettings:
    if path is not None and Path(path).is_file():
        return load_settings(path)
    return RoiSettings()


def is_settings_file(path: str | Path) -> bool:
    return Path(path).name.startswith("roi")


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    problems: list[str] = []
    for p in paths:
        try:
            load_settings(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


# -- due dates ------------------------------------------------------------------------------------


def response_days(settings: RoiSettings, requester_type: str, state: str | None = None) -> int:
    """The days to answer a request: the state's rule for the requester type, its default, then
    the federal rule's for the requester type, then ``default_days``."""
    due = settings.due
    found = due.states.get((state or "").strip().upper())
    if found is not None:
        return found.by_requester_type.get(requester_type, found.default_days)
    return due.by_requester_type.get(requester_type, due.default_days)


def due_date(
    settings: RoiSettings, received: date, requester_type: str, state: str | None = None, extensions: int = 0
) -> date:
    """When the request must be answered: received + its days + ``extensions`` x extension_days."""
    days = response_days(settings, requester_type, state) + extensions * settings.due.extension_days
    return received + timedelta(days=days)


def extension_problem(settings: RoiSettings, extensions: int, reason: str | None) -> str | None:
    """Why an extension cannot be granted (None: it can)."""
    if not (reason or "").strip():
        return "an extension needs a reason (it is written to the requester)"
    if extensions >= settings.due.max_extensions:
        return (
            f"the due date was already extended {extensions} time(s) (at most {settings.due.max_extensions})"
        )
    return None


def aging(received: date, due: date, today: date, status: str) -> dict:
    """``{age_days, days_left, overdue}`` of a request on ``today``."""
    open_ = status in OPEN
    return {
        "age_days": (today - received).days,
        "days_left": (due - today).days if open_ else None,
        "overdue": open_ and today > due,
    }


AGE_BUCKETS = (
    (0, 10, "0–10 days"),
    (11, 20, "11–20 days"),
    (21, 30, "21–30 days"),
    (31, None, "over 30 days"),
)
SOON_DAYS = 5  # an open request due within this many days is listed on the dashboard


def _when_due(r: dict) -> str:
    left = r["days_left"]
    if r["overdue"]:
        return f"{-left} day{'s' if -left != 1 else ''} overdue (due {r['due_on']})"
    if left == 0:
        return f"due today ({r['due_on']})"
    return f"due in {left} day{'s' if left != 1 else ''} ({r['due_on']})"


def aging_summary(rows: Iterable[dict], soon_days: int = SOON_DAYS) -> dict:
    """The dashboard's view of the open requests (as :func:`interface.desk.roi.queue` gives them):
    ``open``, ``overdue``, ``buckets`` [{label, count}] by age since received (an overdue request
    counts in ``overdue`` only), and ``attention``: the overdue and soon-due ones, most urgent
    first, each with ``words`` (no patient data: the request's number, its requester type and
    status, its due date)."""
    rows = [r for r in rows if r["status"] in OPEN]
    overdue = [r for r in rows if r["overdue"]]
    counts = [0] * len(AGE_BUCKETS)
    for r in rows:
        if r["overdue"]:
            continue
        for i, (low, high, _label) in enumerate(AGE_BUCKETS):
            if r["age_days"] >= low and (high is None or r["age_days"] <= high):
                counts[i] += 1
                break
    urgent = [r for r in rows if r["overdue"] or (r["days_left"] is not None and r["days_left"] <= soon_days)]
    urgent.sort(key=lambda r: (r["days_left"], r["id"]))
    return {
        "open": len(rows),
        "overdue": len(overdue),
        "buckets": [{"label": b[2], "count": n} for b, n in zip(AGE_BUCKETS, counts)],
        "attention": [
            {
                "id": r["id"],
                "overdue": r["overdue"],
                "words": f"{REQUESTER_TYPES.get(r['requester_type'], r['requester_type'])} request, "
                f"{STATUSES.get(r['status'], r['status']).lower()}, received {r['received_on']}: {_when_due(r)}",
            }
            for r in urgent
        ],
        "soon_days": soon_days,
    }


def identity_problems(settings: RoiSettings, requester_type: str, checks: dict[str, Any]) -> list[str]:
    """The required identity checks not ticked, in words."""
    need = settings.identity.required.get(requester_type, ["photo_id"])
    return [IDENTITY_CHECKS[c] for c in need if not checks.get(c)]


# -- fees -----------------------------------------------------------------------------------------


def _cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def fee(
    settings: RoiSettings, *, delivery: str, purpose: str, requester_type: str, pages: int | None
) -> dict:
    """``{cents, currency, items: [{label, cents}], lines: [text], free}`` for a copy. ``pages``
    None: not known yet (the paper fee is then an estimate: its line says per page)."""
    f = settings.fees
    if purpose in f.free_purposes or requester_type in f.free_requester_types:
        why = (
            PURPOSES.get(purpose, purpose) if purpose in f.free_purposes else REQUESTER_TYPES[requester_type]
        )
        return _fee(f.currency, [(f"No fee ({why})", 0)], free=True)
    over = f.by_requester_type.get(requester_type)

    def amount(name: str) -> Decimal:
        own = getattr(over, name, None) if over is not None else None
        return own if own is not None else getattr(f, name)

    if delivery in ELECTRONIC:
        return _fee(f.currency, [("Electronic copy, flat fee", _cents(amount("electronic_flat")))])
    per, base = amount("paper_per_page"), amount("paper_base")
    items = []
    if base:
        items.append(("Paper copy, base fee", _cents(base)))
    if pages is None:
        items.append((f"Paper copy at {money(_cents(per), f.currency)} per page (counted at release)", 0))
    else:
        items.append(
            (f"Paper copy, {pages} page(s) at {money(_cents(per), f.currency)}", _cents(per * pages))
        )
    postage = amount("mail_postage")
    if delivery == "mail" and postage:
        items.append(("Postage", _cents(postage)))
    return _fee(f.currency, items, free=not base and not per and not (delivery == "mail" and postage))


def _fee(currency: str, items: list[tuple[str, int]], free: bool | None = None) -> dict:
    total = sum(c for _, c in items)
    return {
        "cents": total,
        "currency": currency,
        "items": [{"label": label, "cents": c} for label, c in items],
        "lines": [f"{label}: {money(c, currency)}" if c else label for label, c in items],
        "free": total == 0 if free is None else free,
    }


def money(cents: int, currency: str = "USD") -> str:
    sign = "$" if currency == "USD" else f"{currency} "
    return f"{sign}{cents // 100}.{cents % 100:02d}"


# -- authorization and legal basis ----------------------------------------------------------------


def legal_basis(settings: RoiSettings, requester_type: str, purpose: str) -> str:
    """The basis a request is disclosed under: the first ``legal_basis`` rule that matches, else
    ``authorization`` (one is needed)."""
    for rule in settings.legal_basis:
        if requester_type in rule.requester_types and (not rule.purposes or purpose in rule.purposes):
            return rule.basis
    return "authorization"


def authorization_problems(settings: RoiSettings, auth: dict[str, Any] | None, today: date) -> list[dict]:
    """What keeps an authorization from allowing a release: ``[{element, text}]``, empty when it
    is complete, unexpired and not revoked. ``auth`` holds the checklist: the texts
    (``description``, ``discloser``, ``recipient``, ``purpose``, ``signed_by``,
    ``representative_authority``), ``expires_on`` / ``expiry_event`` (+ ``expiry_event_occurred``),
    ``signed_on``, the booleans ``signed_by_representative``, ``revocation_statement``,
    ``conditioning_statement``, ``redisclosure_statement``, ``form_sha256``, ``revoked_on``."""
    if auth is None:
        return [{"element": "authorization", "text": "No authorization on file"}]
    out = []
    required = settings.authorization.required_elements

    def missing(element: str) -> None:
        out.append({"element": element, "text": f"Missing element: {ELEMENTS[element]}"})

    for element in ("description", "discloser", "recipient", "purpose"):
        if element in required and not _text(auth.get(element)):
            missing(element)
    if "expiration" in required:
        if not auth.get("expires_on") and not _text(auth.get("expiry_event")):
            missing("expiration")
    if "signature" in required and (not _text(auth.get("signed_by")) or not auth.get("signed_on")):
        missing("signature")
    if (
        "representative_authority" in required
        and auth.get("signed_by_representative")
        and not _text(auth.get("representative_authority"))
    ):
        missing("representative_authority")
    for element in ("revocation_statement", "conditioning_statement", "redisclosure_statement"):
        if element in required and not auth.get(element):
            missing(element)
    if "signed_form" in required and not auth.get("form_sha256"):
        missing("signed_form")
    expires = _as_date(auth.get("expires_on"))
    if expires is not None and today > expires:
        out.append({"element": "expiration", "text": f"Expired on {expires.isoformat()}"})
    if auth.get("expiry_event_occurred"):
        out.append(
            {"element": "expiration", "text": f"Expired: {auth.get('expiry_event') or 'the event happened'}"}
        )
    signed = _as_date(auth.get("signed_on"))
    if signed is not None and signed > today:
        out.append({"element": "signature", "text": f"Signed in the future ({signed.isoformat()})"})
    revoked = _as_date(auth.get("revoked_on"))
    if revoked is not None and revoked <= today:
        out.append({"element": "revocation", "text": f"Revoked on {revoked.isoformat()}"})
    return out


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _as_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# -- accounting of disclosures --------------------------------------------------------------------


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (28 February for 29 February)."""
    y = day.year - years
    return date(y, day.month, min(day.day, calendar.monthrange(y, day.month)[1]))


def accounting_period(
    settings: RoiSettings, start: date | None, end: date | None, today: date
) -> tuple[date, date]:
    """The period of an accounting: default the full ``years`` (six) up to today; ValueError when
    it starts earlier than that, ends before it starts, or ends in the future."""
    earliest = years_before(today, settings.accounting.years)
    start = start or earliest
    end = end or today
    if start < earliest:
        raise ValueError(
            f"an accounting covers at most {settings.accounting.years} years: from {earliest.isoformat()} at the earliest"
        )
    if end < start:
        raise ValueError("the period ends before it starts")
    if end > today:
        raise ValueError("the period ends in the future")
    return start, end


def accountable(settings: RoiSettings, disclosures: Iterable[dict], start: date, end: date) -> list[dict]:
    """The disclosures to account for: made in ``[start, end]`` (their ``disclosed_on``) and
    whose ``basis`` is not an excluded one."""
    excluded = set(settings.accounting.exclude_bases)
    return [
        d
        for d in disclosures
        if d["basis"] not in excluded and start <= (_as_date(d["disclosed_on"]) or start) <= end
    ]
