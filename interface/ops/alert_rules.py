"""The alerts file: rules, webhook and e-mail channels, validated with
``file:line:``; building the dispatcher from it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from interface.config.suggest import did_you_mean
from interface.config.yamlfile import ConfigError, Strict, load_yaml, validate
from interface.ops.notify import Dispatcher, Email, Webhook

log = logging.getLogger("interface.ops.alerts")


NAME = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_IDS = 20  # item ids listed in one alert
ERROR_SLACK = timedelta(minutes=2)  # error_items looks back this far (transactions committing late)
ERROR_SCAN_LIMIT = 10000


# -- configuration --------------------------------------------------------------------------


class WebhookSpec(Strict):
    """HTTP POST of the alert as JSON."""

    type: Literal["webhook"]
    url: str
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("url must start with http:// or https://")
        return v


class EmailSpec(Strict):
    """One e-mail per alert over SMTP; login credentials come from environment variables."""

    type: Literal["email"]
    host: str
    port: int = Field(25, ge=1, le=65535)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username_env: str | None = Field(None, description="environment variable holding the SMTP user name")
    password_env: str | None = Field(None, description="environment variable holding the SMTP password")
    timeout_seconds: float = Field(30.0, gt=0, le=300)
    subject_prefix: str = "[interface]"

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            if "@" not in a:
                raise ValueError(f"{a!r} is not an e-mail address")
        return v


class Rule(Strict):
    name: str = Field(pattern=NAME)
    type: str
    channels: list[str] = Field(default_factory=list, description="only these channels (empty: all)")
    cooldown_minutes: float = Field(60.0, ge=0, description="minutes before it fires again while still true")
    notify: list[str] | None = Field(None, description="notifier names (default: the top-level notify)")


class ErrorItemsRule(Rule):
    type: Literal["error_items"]
    reasons: list[str] = Field(default_factory=list, description="only these error reasons (empty: all)")

    @field_validator("reasons")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from interface.hl7.errors import REASONS

        for r in v:
            if r not in REASONS:
                raise ValueError(f"unknown reason {r!r} (one of {', '.join(sorted(REASONS))})")
        return v


class QueueAgeRule(Rule):
    type: Literal["queue_age"]
    minutes: float = Field(30.0, gt=0)


class NoMessagesRule(Rule):
    type: Literal["no_messages"]
    minutes: float = Field(60.0, gt=0)
    hours: str | None = Field(None, description='"07:00-19:00": only within these hours (channel time zone)')

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hours(v)
        return v


class DownstreamDownRule(Rule):
    type: Literal["downstream_down"]
    minutes: float = Field(10.0, gt=0)
    destinations: list[str] = Field(default_factory=list, description="only these destinations (empty: all)")


class DigestAddress(Strict):
    """Where one clinician's digest goes: an e-mail address (sent through the rule's
    ``email_via`` notifier's SMTP server) or a webhook URL."""

    email: str | None = None
    webhook: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "DigestAddress":
        if (self.email is None) == (self.webhook is None):
            raise ValueError("give exactly one of email, webhook")
        return self

    @field_validator("email")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and "@" not in v:
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @field_validator("webhook")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("webhook must start with http:// or https://")
        return v


class DeficiencyDigestRule(Rule):
    """Every ``every_hours``, each clinician with open deficiencies gets counts per age bucket
    and a link to the worklist filtered to them (docs/deficiencies.md): to their entry in
    ``clinicians`` (id -> e-mail or webhook), and to the rule's ``notify`` notifiers (one payload
    per clinician; none by default). Never patient names, MRNs or document text."""

    type: Literal["deficiency_digest"]
    every_hours: float = Field(24.0, gt=0, le=24 * 31)
    bylaws_days: float = Field(30.0, gt=0, description="delinquent past this (as in completeness.yaml)")
    email_via: str | None = Field(None, description="an email notifier: its SMTP server sends the digests")
    clinicians: dict[str, DigestAddress] = Field(default_factory=dict, description="clinician id -> address")
    include_unassigned: bool = Field(False, description="also a digest of the findings nobody is named for")


class SensitiveAccessRule(Rule):
    """A sensitive record was opened with a reason (break the glass, docs/release-of-information.md):
    fires with the count, the users and the audit ids (never the patient or the document's
    category), again for later openings once the cooldown has passed, and resolves when none
    happened in the last ``minutes``."""

    type: Literal["sensitive_access"]
    minutes: float = Field(60.0, gt=0, description="resolves after this long without an opening")
    cooldown_minutes: float = Field(0.0, ge=0, description="minutes before later openings are sent")


class RoiOverdueRule(Rule):
    """Release-of-information requests still open past their due date (45 CFR 164.524: 30 days,
    rules/roi.yaml): fires with the count, the oldest due date and the request ids (never the
    patient or the requester), again every cooldown while any is overdue, resolves when none is."""

    type: Literal["roi_overdue"]
    days_overdue: int = Field(0, ge=0, le=366, description="only requests overdue by more than this")
    cooldown_minutes: float = Field(24 * 60.0, ge=0, description="minutes before it fires again")


RULE_TYPES: dict[str, type[Rule]] = {
    "error_items": ErrorItemsRule,
    "queue_age": QueueAgeRule,
    "no_messages": NoMessagesRule,
    "downstream_down": DownstreamDownRule,
    "deficiency_digest": DeficiencyDigestRule,
    "sensitive_access": SensitiveAccessRule,
    "roi_overdue": RoiOverdueRule,
}


class AlertsFile(Strict):
    interval_seconds: float = Field(30.0, ge=1, le=3600)
    console_url: str | None = Field(
        None, description="base of the links in alerts (default: the web console address)"
    )
    notifiers: dict[str, dict] = Field(default_factory=dict)
    notify: list[str] = Field(default_factory=list, description="default notifiers of rules without notify:")
    rules: list[dict] = Field(default_factory=list)


@dataclass
class AlertConfig:
    interval_seconds: float = 30.0
    console_url: str | None = None
    notifiers: dict = field(default_factory=dict)  # name -> WebhookSpec | EmailSpec
    notify: list[str] = field(default_factory=list)
    rules: list = field(default_factory=list)
    file: str = ""

    def targets(self, rule: Rule) -> list[str]:
        return list(rule.notify if rule.notify is not None else self.notify)


def parse_hours(v: str) -> tuple[dtime, dtime]:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", v)
    if not m:
        raise ValueError(f'hours {v!r}: expected "HH:MM-HH:MM", e.g. "07:00-19:00"')
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"hours {v!r}: not a time of day")
    start, end = dtime(h1, m1), dtime(23, 59, 59, 999999) if h2 == 24 else dtime(h2, m2)
    if start == end:
        raise ValueError(f"hours {v!r}: empty window")
    return start, end


def load_alerts(
    path: str | Path, channel_names: set[str] | None = None, destination_names: set[str] | None = None
) -> AlertConfig:
    """Load and check ``alerts.yaml``; ConfigError lists every problem as ``file:line: message``.
    ``channel_names``/``destination_names``: the configured channels and their destinations, to
    catch a misspelt ``channels:``/``destinations:`` entry (with the closest name suggested)."""
    doc = load_yaml(path, keep_going=True)
    problems = list(doc.problems)
    clean = replace(doc, problems=[])
    if doc.data is not None and not isinstance(doc.data, dict):
        raise ConfigError([f"{doc.file}:1: expected a mapping (interval_seconds, notifiers, notify, rules)"])
    try:
        top = validate(AlertsFile, clean)
    except ConfigError as exc:
        raise ConfigError(sorted(set(problems + exc.problems), key=_order)) from None
    cfg = AlertConfig(
        interval_seconds=top.interval_seconds, console_url=top.console_url, notify=top.notify, file=doc.file
    )
    for name, spec in top.notifiers.items():
        where = clean.where(("notifiers", name))
        if not re.match(NAME, str(name)) or name == "log":
            problems.append(f"{where}: notifier name {name!r}: letters, digits, _ . - (and not 'log')")
            continue
        kind = spec.get("type") if isinstance(spec, dict) else None
        model = {"webhook": WebhookSpec, "email": EmailSpec}.get(kind)
        if model is None:
            problems.append(f"{where}: notifiers.{name}.type: expected 'webhook' or 'email'")
            continue
        try:
            cfg.notifiers[name] = validate(model, clean, data=spec, prefix=("notifiers", name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    known = set(top.notifiers) | {"log"}
    for i, n in enumerate(top.notify):
        if n not in known:
            problems.append(f"{clean.where(('notify', i))}: unknown notifier {n!r}{did_you_mean(n, known)}")
    names: set[str] = set()
    for i, raw in enumerate(top.rules):
        kind = raw.get("type") if isinstance(raw, dict) else None
        model = RULE_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(
                f"{clean.where(('rules', i, 'type'))}: rules.{i}.type: expected one of "
                f"{', '.join(RULE_TYPES)}"
            )
            continue
        name = raw.get("name")  # checked on the raw rule too, so they show with its other problems
        if isinstance(name, str):
            if name in names:
                problems.append(f"{clean.where(('rules', i, 'name'))}: rule name {name!r} already used")
            names.add(name)
        for key, known_values, what in (
            ("notify", known, "notifier"),
            ("channels", channel_names, "channel"),
            ("destinations", destination_names, "destination"),
        ):
            values = raw.get(key)
            if known_values is None or not isinstance(values, list):
                continue
            for j, v in enumerate(values):
                if isinstance(v, str) and v not in known_values:
                    problems.append(
                        f"{clean.where(('rules', i, key, j))}: unknown {what} {v!r}"
                        f"{did_you_mean(v, known_values)}"
                    )
        try:
            rule = validate(model, clean, data=raw, prefix=("rules", i))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(rule, DeficiencyDigestRule) and any(a.email for a in rule.clinicians.values()):
            if not isinstance(cfg.notifiers.get(rule.email_via or ""), EmailSpec):
                problems.append(
                    f"{clean.where(('rules', i, 'email_via'))}: rules.{i}.email_via: name an email "
                    "notifier to send the clinicians' e-mail digests through"
                )
                continue
        cfg.rules.append(rule)
    if problems:
        raise ConfigError(sorted(set(problems), key=_order))
    return cfg


def _order(p: str):
    file, _, rest = p.partition(":")
    line = rest.split(":", 1)[0]
    return (file, int(line) if line.isdigit() else 0, p)


def check_paths(
    paths: list[str], channel_names: set[str] | None = None, destination_names: set[str] | None = None
) -> list[str]:
    """``interface check``: every problem of these alert files."""
    out: list[str] = []
    for p in paths:
        try:
            load_alerts(p, channel_names, destination_names)
        except ConfigError as exc:
            out.extend(exc.problems)
    return out


def build_dispatcher(cfg: AlertConfig, environ=None) -> Dispatcher:
    """The notifiers of ``cfg``; SMTP credentials read from the environment variables it names
    (a variable that is not set is a ConfigError now, not a failed e-mail at 3 a.m.)."""
    environ = os.environ if environ is None else environ
    notifiers, problems = {}, []
    for name, spec in cfg.notifiers.items():
        if isinstance(spec, WebhookSpec):
            notifiers[name] = Webhook(name, spec.url, spec.timeout_seconds, spec.headers)
            continue
        creds = {}
        for key, var in (("username", spec.username_env), ("password", spec.password_env)):
            if var:
                if var not in environ:
                    problems.append(f"{cfg.file}:1: notifier {name!r}: environment variable {var} is not set")
                creds[key] = environ.get(var)
        notifiers[name] = Email(
            name,
            spec.host,
            spec.port,
            spec.from_,
            spec.to,
            starttls=spec.starttls,
            timeout=spec.timeout_seconds,
            subject_prefix=spec.subject_prefix,
            **creds,
        )
    for rule in cfg.rules:
        if isinstance(rule, DeficiencyDigestRule):
            notifiers.update(_digest_notifiers(rule, notifiers))
    if problems:
        raise ConfigError(problems)
    return Dispatcher(notifiers)


def digest_notifier_name(rule: str, clinician: str) -> str:
    """The dispatcher's name for one clinician's address of a ``deficiency_digest`` rule."""
    return f"{rule}/clinician/{clinician}"


def _digest_notifiers(rule: DeficiencyDigestRule, notifiers: dict) -> dict:
    """One notifier per clinician address: an Email like ``email_via`` but to that address, or a
    Webhook to that URL (so failed digests are retried like alerts)."""
    out = {}
    via = notifiers.get(rule.email_via or "")
    for cid, a in rule.clinicians.items():
        name = digest_notifier_name(rule.name, cid)
        if a.webhook:
            out[name] = Webhook(name, a.webhook)
        elif isinstance(via, Email):
            out[name] = Email(
                name,
                via.host,
                via.port,
                via.sender,
                [a.email],
                starttls=via.starttls,
                username=via.username,
                password=via.password,
                timeout=via.timeout,
                subject_prefix=via.subject_prefix,
            )
    return out


# -- evaluation -------------------------------------------------------------------------------
