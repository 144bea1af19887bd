"""Outgoing mail to the recipients of released records: the schema of ``mail.yaml``.

Where: ``mail.yaml`` beside the channels directory (``interface run`` / ``interface web`` read it at
start if it is there; none: nothing is e-mailed, requests for delivery by e-mail wait in the
outbox), ``--mail FILE`` for ``interface roi``. Example::

    smtp:
      host: smtp.hospital.example
      port: 587
      starttls: true                      # upgrade the connection before sending (default: false)
      from: records@hospital.example
      username_env: ROI_SMTP_USER         # names of environment variables, never the secrets
      password_env: ROI_SMTP_PASSWORD
      timeout_seconds: 30
    public_url: https://records.hospital.example   # where recipients reach the download links
    sender_name: General Hospital, Health Information Management
    retry_minutes: 10                     # a failed e-mail is tried again after this long
    max_attempts: 10                      # then it waits for a clerk ("Send again")

An e-mail carries the download link only, never the records or the patient's name
(:mod:`interface.desk.roi_delivery`).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from interface.config.yamlfile import ConfigError, Strict, load_yaml, validate

FILE_NAME = "mail.yaml"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Smtp(Strict):
    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    from_: str = Field(alias="from")
    username_env: str | None = Field(None, pattern=_ENV)
    password_env: str | None = Field(None, pattern=_ENV)
    timeout_seconds: float = Field(30.0, gt=0, le=300)

    @field_validator("from_")
    @classmethod
    def _address(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError(f"{v!r} is not an e-mail address")
        return v


class MailSettings(Strict):
    smtp: Smtp
    public_url: str = Field(description="the console's address as recipients reach it")
    sender_name: str = "Health Information Management"
    retry_minutes: float = Field(10.0, gt=0, le=1440)
    max_attempts: int = Field(10, ge=1, le=100)

    @field_validator("public_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("public_url must start with http:// or https://")
        return v.rstrip("/")


def load_mail(path: str | Path) -> MailSettings:
    """Read and check ``mail.yaml`` (ConfigError with ``file:line:`` for every problem)."""
    doc = load_yaml(path, keep_going=True)
    if not isinstance(doc.data, dict):
        raise ConfigError([f"{doc.where()}: expected a mapping (smtp:, public_url:)"])
    return validate(MailSettings, doc)


def load_optional(path: str | Path | None) -> MailSettings | None:
    """The settings in ``path`` if that file exists, else None (no outgoing mail)."""
    if path is None or not Path(path).is_file():
        return None
    return load_mail(path)


def is_checked(path: str | Path) -> bool:
    """Whether ``interface check`` reads ``path`` as mail settings: an existing ``mail*.yaml``
    outside a channels directory."""
    p = Path(path)
    return (
        p.is_file()
        and p.name.startswith("mail")
        and p.suffix in (".yaml", ".yml")
        and "channels" not in p.resolve().parent.parts
    )


def check_paths(paths) -> list[str]:
    problems: list[str] = []
    for p in paths:
        try:
            load_mail(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems
