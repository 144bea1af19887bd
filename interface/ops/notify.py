"""Alert notifiers: the log (always), a webhook (HTTP POST of JSON), e-mail (SMTP).

A notifier gets the alert's payload (:func:`interface.ops.alerts.payload`: rule, channel, counts,
reasons, item ids, ages, a console link — never patient data) and either delivers it or raises
:class:`NotifyError`. The :class:`Dispatcher` logs every alert as a WARNING line, hands it to
the rule's notifiers, and keeps what failed to retry at the next evaluation (at most
``max_pending`` notifications; the oldest are dropped, with a log line, past that). It runs in
the alert evaluator's thread, never in the reactor or a worker, so a slow or dead webhook or
mail server delays only the next alert check, by at most its timeout.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage

log = logging.getLogger("interface.ops.alerts")


class NotifyError(Exception):
    """A notification was not delivered (the text says why, without the payload)."""


class Webhook:
    """POST the payload as JSON to ``url``; any 2xx answer is delivered."""

    def __init__(self, name: str, url: str, timeout: float = 10.0, headers: dict[str, str] | None = None):
        self.name, self.url, self.timeout = name, url, timeout
        self.headers = dict(headers or {})

    def send(self, payload: dict) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "interface-engine-alerts",
                **self.headers,
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read(65536)
                if not 200 <= resp.status < 300:
                    raise NotifyError(f"HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NotifyError(f"{type(exc).__name__}: {reason}") from None


class Email:
    """One message per alert over SMTP (optional STARTTLS and login)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        subject_prefix: str = "[interface]",
    ):
        self.name, self.host, self.port = name, host, port
        self.sender, self.to = sender, list(to)
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout, self.subject_prefix = timeout, subject_prefix

    def message(self, payload: dict) -> EmailMessage:
        msg = EmailMessage()
        state = {"resolved": "RESOLVED", "digest": "DIGEST"}.get(payload.get("status"), "FIRING")
        summary = str(payload.get("summary") or payload.get("rule")).removeprefix("resolved: ")
        msg["Subject"] = f"{self.subject_prefix} {state}: {summary}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        lines = [payload.get("summary", ""), ""]
        for k in ("status", "rule", "type", "channel", "destination", "since", "at", "link"):
            if payload.get(k) is not None:
                lines.append(f"{k}: {payload[k]}")
        lines += ["", json.dumps(payload.get("details", {}), indent=1, sort_keys=True)]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, payload: dict) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(payload))
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}") from None


@dataclass
class _Pending:
    notifier: str
    payload: dict
    attempts: int = 1


@dataclass
class Dispatcher:
    """Delivers alert payloads: a WARNING log line always, then each named notifier; failures
    are kept and retried by :meth:`retry` (called at the start of each evaluation)."""

    notifiers: dict = field(default_factory=dict)  # name -> Webhook | Email
    max_pending: int = 200
    pending: list = field(default_factory=list)

    def deliver(self, payload: dict, names: list[str]) -> None:
        log.warning(
            "alert %s rule=%s channel=%s%s: %s",
            payload["status"],
            payload["rule"],
            payload.get("channel") or "-",
            f" destination={payload['destination']}" if payload.get("destination") else "",
            payload.get("summary", ""),
        )
        for name in names:
            if name == "log":
                continue
            self._try(_Pending(name, payload, 0))

    def retry(self) -> None:
        waiting, self.pending = self.pending, []
        for p in waiting:
            self._try(p)

    def _try(self, p: _Pending) -> None:
        notifier = self.notifiers.get(p.notifier)
        if notifier is None:  # removed from the configuration meanwhile
            return
        try:
            notifier.send(p.payload)
        except NotifyError as exc:
            p.attempts += 1
            log.warning(
                "alert notification to %s failed (attempt %d, retried at the next check): %s",
                p.notifier,
                p.attempts,
                exc,
            )
            self.pending.append(p)
            if len(self.pending) > self.max_pending:
                dropped = self.pending.pop(0)
                log.error(
                    "alert notification to %s dropped after %d attempts (too many waiting)",
                    dropped.notifier,
                    dropped.attempts,
                )
            return
        except Exception as exc:  # a bug in a notifier must not stop the others
            log.error("alert notification to %s failed: %s", p.notifier, type(exc).__name__)
            return
        if p.attempts:
            log.info("alert notification to %s delivered after %d failed attempt(s)", p.notifier, p.attempts)
