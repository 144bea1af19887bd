"""Channels: the typed schema of ``channels/*.yaml`` and its loader.

A channel is one MLLP listener plus what to do with what it receives: which message types it
accepts, which mapping applies, how and when it ACKs, which identifier is the patient's (the
ordering key), limits, allowlist, TLS, retry. The pydantic models below are the single spec:
loading, ``interface check`` and the JSON Schema (``interface schema channel``) all come from them.
"""
from __future__ import annotations

import fnmatch
import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config import ConfigError, Located, Strict, load_yaml, validate
from .identity import MrnRule


class Limits(Strict):
    """Per-listener limits. Past ``max_frame_bytes`` the connection is closed and the event recorded.

    Slow and greedy senders (docs/reliability.md, "Slow and greedy connections"): a frame once
    started must end within ``frame_timeout_seconds``, and arrive at ``min_receive_rate`` bytes/s
    or more over each ``receive_rate_window_seconds`` (both only while a frame is partial and the
    socket is being read); one address holds at most ``max_connections_per_peer`` connections; the
    bytes held in partial frames of all the channel's connections stay under
    ``max_partial_bytes`` (default: 4 x ``max_frame_bytes``)."""

    max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    idle_timeout_seconds: float = Field(600.0, gt=0)
    max_connections: int = Field(100, ge=1)
    max_connections_per_peer: int = Field(20, ge=1)
    frame_timeout_seconds: float = Field(120.0, gt=0)
    min_receive_rate: int = Field(512, ge=0, description="bytes/s while a frame is partial; 0 = no minimum")
    receive_rate_window_seconds: float = Field(10.0, gt=0)
    max_partial_bytes: int | None = Field(None, ge=1024)

    @model_validator(mode="after")
    def _partial_cap(self):
        if self.max_partial_bytes is not None and self.max_partial_bytes < self.max_frame_bytes:
            raise ValueError("max_partial_bytes must be at least max_frame_bytes "
                             "(one largest frame must fit)")
        return self

    @property
    def partial_cap(self) -> int:
        """The bytes all connections of the channel may hold in partial frames."""
        return self.max_partial_bytes if self.max_partial_bytes is not None else 4 * self.max_frame_bytes


class Tls(Strict):
    """MLLP over TLS. ``client_ca`` turns on client-certificate checks (mutual TLS)."""

    cert: str
    key: str
    client_ca: str | None = None
    require_client_cert: bool = False


class ClientTls(Strict):
    """MLLP over TLS to a downstream peer (an ``mllp`` destination or an application-ACK return
    address). The peer's certificate is checked against ``ca`` (a PEM bundle; default: the
    system's trust store) and against ``server_name`` (default: ``host``); ``cert`` and ``key``
    present a client certificate for peers that require one (mutual TLS). ``verify: false``
    encrypts without checking who the peer is (test set-ups only; logged at start-up)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _pair(self):
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls: a client certificate needs both 'cert' and 'key'")
        return self


class Ack(Strict):
    """When to ACK (``on_commit``: once stored; ``on_process``: after the chart/index write) and
    which code family (``auto`` follows MSH-15/16; ``original`` AA/AE/AR; ``enhanced`` CA/CE/CR)."""

    when: Literal["on_commit", "on_process"] = "on_commit"
    mode: Literal["auto", "original", "enhanced"] = "auto"
    application_ack: "ReturnAddress | None" = Field(
        None, description="enhanced mode: where application ACKs (MSH-16 AL/ER/SU) are sent")


class ReturnAddress(Strict):
    """The sender's MLLP listener for application ACKs; queued as destination ``application_ack``."""

    host: str
    port: int = Field(ge=1, le=65535)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    timeout_seconds: float = Field(30.0, gt=0)
    retry: "Retry | None" = None
    tls: ClientTls | None = None


class Mrn(Strict):
    """Which PID-3 repetition is the MRN (and so the ordering key)."""

    authority: str | None = None
    types: list[str] = Field(default_factory=lambda: ["MR"])


class Retry(Strict):
    """Retry policy for transient failures (Dramatiq-style: exponential backoff with jitter)."""

    initial_delay_seconds: float = Field(1.0, ge=0)
    factor: float = Field(2.0, ge=1)
    jitter: float = Field(0.1, ge=0, le=1)
    max_delay_seconds: float = Field(300.0, ge=0)
    max_attempts: int = Field(10, ge=1)


class Destination(Strict):
    """Where processed messages go: the chart/document store through the mapping, an MLLP peer,
    or a file drop. Each destination has its own queue (ordered per key) and retry policy."""

    name: str
    type: Literal["store", "mllp", "file"] = "store"
    mapping: str | None = None
    host: str | None = None
    port: int | None = None
    timeout_seconds: float = Field(30.0, gt=0, description="mllp: how long to wait for the ACK")
    connect_timeout_seconds: float = Field(10.0, gt=0)
    on_ae: Literal["retry", "error"] = Field("retry", description="mllp: AE/CE retried per policy, or straight to the error queue")
    tls: ClientTls | None = Field(None, description="mllp: send over TLS (peer certificate checked; optional client certificate)")
    directory: str | None = None
    filename: str = Field("{channel}-{message_id}-{control_id}.hl7",
                          description="file: name pattern; {channel} {destination} {message_id} {item_id} {control_id} {message_type} {received}")
    retry: Retry | None = None

    @field_validator("filename")
    @classmethod
    def _pattern(cls, v: str) -> str:
        import string

        known = ("channel", "destination", "message_id", "item_id", "control_id", "message_type", "received")
        for _, name, spec, conv in string.Formatter().parse(v):
            if name is not None and (name not in known or spec or conv):
                raise ValueError(f"unknown filename field {{{name}}} (use {', '.join('{' + k + '}' for k in known)})")
        if "/" in v or "\\" in v:
            raise ValueError("filename must not contain a path separator")
        return v

    @model_validator(mode="after")
    def _needs(self):
        if self.type == "store" and not self.mapping:
            raise ValueError("a store destination needs 'mapping'")
        if self.type == "mllp" and (not self.host or not self.port):
            raise ValueError("an mllp destination needs 'host' and 'port'")
        if self.type == "file" and not self.directory:
            raise ValueError("a file destination needs 'directory'")
        if self.tls is not None and self.type != "mllp":
            raise ValueError("'tls' applies to mllp destinations only")
        return self


class Channel(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    enabled: bool = True
    listen: str = Field(description="Twisted endpoint string, e.g. tcp:2575:interface=127.0.0.1")
    tls: Tls | None = None
    allow: list[str] = Field(default_factory=list, description="sender addresses or networks; empty = any")
    limits: Limits = Field(default_factory=Limits)
    accept: list[str] = Field(default_factory=lambda: ["*"], description="message types: ADT^A01, ADT^*, MDM^T0?")
    mapping: str | None = Field(None, description="shorthand for one store destination")
    destinations: list[Destination] = Field(default_factory=list)
    ack: Ack = Field(default_factory=Ack)
    mrn: Mrn = Field(default_factory=Mrn)
    order_by: Literal["patient", "channel", "message"] = Field(
        "patient", description="ordering key: the patient (MRN; merges hold both), the whole channel, or none")
    timezone: str = "UTC"
    validation: Literal["none", "structure"] = "none"
    retry: Retry = Field(default_factory=Retry)
    hold_unknown_patient_seconds: float = Field(86400.0, ge=0)
    apply: Literal["inline", "queued"] = Field(
        "inline", description="inline: a message whose patient has nothing waiting is applied to the "
        "chart/document store in the transaction that journals it (the ACK still follows ack.when); "
        "queued: always by the worker, after the ACK")
    params: dict[str, str] = Field(default_factory=dict)

    @field_validator("listen")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        kind = v.split(":", 1)[0]
        if kind not in ("tcp", "ssl", "unix", "tcp6"):
            raise ValueError(f"unsupported endpoint type {kind!r} (use tcp:PORT:interface=ADDR or ssl:...)")
        if kind in ("tcp", "ssl", "tcp6"):
            port = v.split(":")[1] if ":" in v else ""
            if not port.isdigit() or not (0 <= int(port) <= 65535):
                raise ValueError(f"endpoint {v!r} needs a port number")
        return v

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _ssl_needs_keys(self):
        if self.listen.startswith("ssl:") and self.tls is None and "privateKey=" not in self.listen:
            raise ValueError("an ssl: endpoint needs a tls: block (cert, key, client_ca) "
                             "or privateKey= in the endpoint string")
        return self

    @model_validator(mode="after")
    def _destinations(self):
        if self.mapping and not any(d.type == "store" for d in self.destinations):
            self.destinations.insert(0, Destination(name="store", type="store", mapping=self.mapping))
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        if "application_ack" in names:
            raise ValueError("destination name 'application_ack' is reserved (use ack.application_ack)")
        return self

    # -- behaviour -------------------------------------------------------------------------------

    def accepts(self, message_code: str, trigger: str) -> bool:
        mt = f"{message_code}^{trigger}" if trigger else message_code
        for pattern in self.accept:
            if pattern == "*" or fnmatch.fnmatchcase(mt, pattern.upper()):
                return True
            if "^" not in pattern and fnmatch.fnmatchcase(message_code, pattern.upper()):
                return True
        return False

    def accepts_code(self, message_code: str) -> bool:
        """Whether any accept pattern names this message code (to tell 200 from 201 in ERR-3)."""
        for pattern in self.accept:
            code = pattern.split("^", 1)[0].upper()
            if pattern == "*" or fnmatch.fnmatchcase(message_code, code):
                return True
        return False

    @property
    def mrn_rule(self) -> MrnRule:
        return MrnRule(self.mrn.authority, tuple(t.upper() for t in self.mrn.types))

    def allows(self, host: str) -> bool:
        if not self.allow:
            return True
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n, strict=False) for n in self.allow)

    @property
    def mapping_params(self) -> dict:
        return {"authority": self.mrn.authority, "id_types": tuple(t.upper() for t in self.mrn.types),
                "timezone": self.timezone, **self.params}


def load_channel(path: str | Path) -> tuple[Channel, Located]:
    doc = load_yaml(path, keep_going=True)
    return validate(Channel, doc), doc


def cross_check(loaded: list[tuple[Channel, Located]]) -> list[str]:
    """Problems between channel files: a name or a listening port used twice."""
    problems: list[str] = []
    names: dict[str, str] = {}
    ports: dict[str, str] = {}
    for ch, doc in loaded:
        if ch.name in names:
            problems.append(f"{doc.where(('name',))}: channel name {ch.name!r} already used in {names[ch.name]}")
        names.setdefault(ch.name, doc.file)
        kind = ch.listen.split(":", 1)[0]
        port = ch.listen if kind == "unix" else ch.listen.split(":")[1]
        if port in ports and port != "0" and ch.enabled:
            problems.append(f"{doc.where(('listen',))}: port {port} already used by {ports[port]}")
        if ch.enabled:
            ports.setdefault(port, doc.file)
    return problems


def load_channels(paths: list[str | Path] | str | Path) -> list[Channel]:
    """Load every ``*.yaml`` under the given files/directories; ConfigError lists every problem."""
    files = _yaml_files(paths)
    problems: list[str] = []
    loaded: list[tuple[Channel, Located]] = []
    for f in files:
        try:
            loaded.append(load_channel(f))
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(cross_check(loaded))
    if problems:
        raise ConfigError(problems)
    return [ch for ch, _ in loaded]


def _yaml_files(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml"))))
        else:
            out.append(p)
    return out
