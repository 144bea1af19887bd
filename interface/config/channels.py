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
from typing import Iterable, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from interface.config.yamlfile import ConfigError, Located, Strict, load_yaml, validate
from interface.hl7.identity import MrnRule

# HL7 table 0104 (version id), v2.1 to v2.8.2: what a channel accepts in MSH-12 unless it says
SUPPORTED_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)

DEFAULT_FALLBACK_CODEC = "cp1252"  # fallback_charset WINDOWS-1252, the default


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
            raise ValueError(
                "max_partial_bytes must be at least max_frame_bytes (one largest frame must fit)"
            )
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


Timing = Literal["on_commit", "on_process"]


class Ack(Strict):
    """When to ACK and which code family.

    ``when`` (``on_commit``: once stored; ``on_process``: after the chart/index write, so content
    errors come back as AE) applies to both acknowledgment modes unless ``original`` or
    ``enhanced`` says otherwise for its mode (HL7 v2.5.1 2.9): the usual set-up is
    ``{original: on_process, enhanced: on_commit}`` — original-mode senders get AE for content
    errors, enhanced-mode senders CA once committed and the outcome in the application ACK.
    ``mode``: ``auto`` follows MSH-15/16 (valued: enhanced); ``original`` AA/AE/AR;
    ``enhanced`` CA/CE/CR."""

    when: Timing = "on_commit"
    original: Timing | None = Field(
        None, description="timing for original-mode messages (MSH-15/16 empty); default: when"
    )
    enhanced: Timing | None = Field(
        None, description="timing for enhanced-mode messages (MSH-15 or MSH-16 valued); default: when"
    )
    mode: Literal["auto", "original", "enhanced"] = "auto"
    application_ack: "ReturnAddress | None" = Field(
        None, description="enhanced mode: where application ACKs (MSH-16 AL/ER/SU) are sent"
    )
    same_connection: bool = Field(
        False,
        description=(
            "enhanced mode: send the application ACK back on the connection the message came in on, "
            "after its accept ACK (with MSH-15 NE: no answer expected); if that connection is gone it "
            "goes to application_ack when configured, else into the error queue as undeliverable"
        ),
    )
    same_connection_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "how long an application ACK waits for its connection's engine process (one that died "
            "or restarted) before it is sent to application_ack or marked undeliverable"
        ),
    )

    def is_enhanced(self, header) -> bool:
        """Whether this message is acknowledged in enhanced mode (2.9.2), by ``mode`` and MSH-15/16."""
        if self.mode != "auto":
            return self.mode == "enhanced"
        return header is not None and header.enhanced

    def timing(self, header) -> str:
        """``on_commit`` or ``on_process`` for this message: its mode's setting, else ``when``."""
        per_mode = self.enhanced if self.is_enhanced(header) else self.original
        return per_mode or self.when


class ReturnAddress(Strict):
    """The sender's MLLP listener for application ACKs; queued as destination ``application_ack``."""

    host: str
    port: int = Field(ge=1, le=65535)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    timeout_seconds: float = Field(30.0, gt=0)
    retry: "Retry | None" = None
    tls: ClientTls | None = None
    expect_ack: bool = Field(
        True,
        description=(
            "false: send each application ACK as 'expect no reply' (MSH-15 NE) and do not wait for an "
            "answer; delivered once written. For receivers that never answer a message carrying MSA-2 "
            "(HAPI's default server among them)"
        ),
    )


_MATCH_FIELDS = (
    ("sending_application", 3),
    ("sending_facility", 4),
    ("receiving_application", 5),
    ("receiving_facility", 6),
)


class Match(Strict):
    """Which messages are this channel's, by their header (several channels may then share one
    ``listen`` endpoint: each message goes to the one channel that matches). Each list: the
    values accepted for that field, matched against the HD's namespace id (component 1) or the
    whole field; empty: any. A message that matches no channel is refused (AR, ERR-3 103 at
    the field)."""

    sending_application: list[str] = Field(default_factory=list, description="MSH-3")
    sending_facility: list[str] = Field(default_factory=list, description="MSH-4")
    receiving_application: list[str] = Field(default_factory=list, description="MSH-5")
    receiving_facility: list[str] = Field(default_factory=list, description="MSH-6")

    def mismatch(self, values: tuple[str, str, str, str], component: str = "^") -> int | None:
        """The first MSH field (3..6) whose value is not accepted, or None if all are."""
        for (name, n), value in zip(_MATCH_FIELDS, values):
            wanted = getattr(self, name)
            if wanted and not hd_matches(value, wanted, component):
                return n
        return None

    def overlaps(self, other: "Match | None") -> bool:
        """Whether some header could match both (each field: one side open, or a shared value)."""
        if other is None:
            return True
        return all(
            not a or not b or set(a) & set(b)
            for a, b in ((getattr(self, n), getattr(other, n)) for n, _ in _MATCH_FIELDS)
        )


def hd_matches(value: str, wanted: list[str], component: str = "^") -> bool:
    """An HD field (MSH-3..6) against configured values: the whole field or its namespace id."""
    first = value.split(component)[0].strip() if component else value
    return value in wanted or first in wanted


class Identity(Strict):
    """The channel's own application and facility: MSH-3/MSH-4 of its ACKs (batch ACK headers
    BHS-3/BHS-4 too) and of its application ACKs. Without it an ACK echoes the message's
    MSH-5/MSH-6. Write an HD's components with ``^`` (e.g. ``INT^1.2.3^ISO``)."""

    application: str = Field("", description="MSH-3 of the channel's ACKs (empty: the ACKs echo MSH-5/MSH-6)")
    facility: str = Field("", description="MSH-4 of the channel's ACKs")
    refuse_unaddressed: bool = Field(
        False,
        description=(
            "refuse (AR, ERR-3 103 at MSH-5/MSH-6) a message whose MSH-5 is not `application` or whose "
            "MSH-6 is not `facility` (when set)"
        ),
    )
    authoritative: bool = Field(
        False,
        description=(
            "this sender is the source of truth for who its patients are: its ADT updates may rewrite "
            "a chart's birth date, sex and names without the identity check (rules/identity.yaml) "
            "holding them for a clerk"
        ),
    )

    @model_validator(mode="after")
    def _addressed(self) -> "Identity":
        if self.refuse_unaddressed and not self.application:
            raise ValueError("refuse_unaddressed needs `application` (the MSH-5 to accept)")
        return self

    def mismatch(
        self, receiving_application: str, receiving_facility: str, component: str = "^"
    ) -> int | None:
        """With ``refuse_unaddressed``: 5 or 6 when MSH-5/MSH-6 do not name this identity."""
        if not self.refuse_unaddressed:
            return None
        if not hd_matches(receiving_application, [self.application.replace("^", component)], component):
            return 5
        if self.facility and not hd_matches(
            receiving_facility, [self.facility.replace("^", component)], component
        ):
            return 6
        return None


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
    on_ae: Literal["retry", "error"] = Field(
        "retry", description="mllp: AE/CE retried per policy, or straight to the error queue"
    )
    expect_ack: bool = Field(
        True,
        description="mllp: false = the peer never answers: delivered once "
        "written (answers that come anyway are read and discarded)",
    )
    tls: ClientTls | None = Field(
        None, description="mllp: send over TLS (peer certificate checked; optional client certificate)"
    )
    directory: str | None = None
    filename: str = Field(
        "{channel}-{message_id}-{control_id}.hl7",
        description="file: name pattern; {channel} {destination} {message_id} {item_id} {control_id} {message_type} {received}",
    )
    retry: Retry | None = None

    @field_validator("filename")
    @classmethod
    def _pattern(cls, v: str) -> str:
        import string

        known = ("channel", "destination", "message_id", "item_id", "control_id", "message_type", "received")
        for _, name, spec, conv in string.Formatter().parse(v):
            if name is not None and (name not in known or spec or conv):
                raise ValueError(
                    f"unknown filename field {{{name}}} (use {', '.join('{' + k + '}' for k in known)})"
                )
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
    _source: Located | None = PrivateAttr(None)  # the file and lines it was loaded from (console)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    enabled: bool = True
    listen: str = Field(description="Twisted endpoint string, e.g. tcp:2575:interface=127.0.0.1")
    tls: Tls | None = None
    allow: list[str] = Field(default_factory=list, description="sender addresses or networks; empty = any")
    limits: Limits = Field(default_factory=Limits)
    accept: list[str] = Field(
        default_factory=lambda: ["*"], description="message types: ADT^A01, ADT^*, MDM^T0?"
    )
    mapping: str | None = Field(None, description="shorthand for one store destination")
    destinations: list[Destination] = Field(default_factory=list)
    ack: Ack = Field(default_factory=Ack)
    mrn: Mrn = Field(default_factory=Mrn)
    order_by: Literal["patient", "channel", "message"] = Field(
        "patient", description="ordering key: the patient (MRN; merges hold both), the whole channel, or none"
    )
    timezone: str = "UTC"
    validation: Literal["none", "structure"] = "none"
    retry: Retry = Field(default_factory=Retry)
    hold_unknown_patient_seconds: float = Field(86400.0, ge=0)
    apply: Literal["inline", "queued"] = Field(
        "inline",
        description="inline: a message whose patient has nothing waiting is applied to the "
        "chart/document store in the transaction that journals it (the ACK still follows ack.when); "
        "queued: always by the worker, after the ACK",
    )
    params: dict[str, str] = Field(default_factory=dict)
    match: Match | None = Field(None, description="route by MSH-3..MSH-6: channels sharing a listen endpoint")
    identity: Identity | None = Field(
        None,
        description="this channel's MSH-3/MSH-4 in its ACKs; `authoritative`: the source of truth for patients",
    )
    fallback_charset: str = Field(
        "WINDOWS-1252",
        description="how to read a message without MSH-18 whose bytes are not valid "
        "UTF-8: a table 0211 name (8859/1, 8859/15, UNICODE UTF-8...) or WINDOWS-1252 (the default)",
    )

    @field_validator("fallback_charset")
    @classmethod
    def _charset(cls, v: str) -> str:
        from interface.hl7.message import CHARSETS

        if v.strip().upper() not in CHARSETS:
            raise ValueError(f"unknown character set {v!r} (use one of {', '.join(sorted(CHARSETS))})")
        return v.strip().upper()

    @property
    def fallback_codec(self) -> str:
        """The Python codec of ``fallback_charset`` (for ``message.decode``)."""
        from interface.hl7.message import CHARSETS

        return CHARSETS[self.fallback_charset]

    # -- what a frame and its header must be (docs/hl7-conformance.md "Frames, headers and batches")
    processing_ids: list[str] = Field(
        default_factory=lambda: ["P"],
        min_length=1,
        description="MSH-11.1 processing ids accepted (HL7 table 0103: P production, T training, D "
        'debugging); anything else is AR, ERR-3 202, stored and never applied. "" accepts an empty MSH-11',
    )
    versions: list[str] = Field(
        default_factory=lambda: list(SUPPORTED_VERSIONS),
        min_length=1,
        description="MSH-12.1 version ids accepted (HL7 table 0104; patterns such as 2.8.*); "
        "anything else is AR, ERR-3 203",
    )
    multi_message: Literal["split", "reject"] = Field(
        "split",
        description="a frame without FHS/BHS that holds several MSH: split (each message "
        "journalled, applied and ACKed on its own, one ACK frame each, in order) or reject "
        "(the whole frame AR, ERR-3 100 at the second MSH)",
    )

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
            raise ValueError(
                "an ssl: endpoint needs a tls: block (cert, key, client_ca) "
                "or privateKey= in the endpoint string"
            )
        return self

    @model_validator(mode="after")
    def _destinations(self):
        if self.mapping and not any(d.type == "store" for d in self.destinations):
            self.destinations.insert(0, Destination(name="store", type="store", mapping=self.mapping))
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        if "application_ack" in names or "connection_ack" in names:
            raise ValueError(
                "destination names 'application_ack' and 'connection_ack' are reserved "
                "(use ack.application_ack / ack.same_connection)"
            )
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

    def accepts_processing_id(self, processing_id: str) -> bool:
        """MSH-11.1 (PT-1) against ``processing_ids`` (case-insensitive)."""
        return processing_id in self.processing_ids or processing_id.upper() in {
            p.upper() for p in self.processing_ids
        }

    def accepts_version(self, version: str) -> bool:
        """MSH-12.1 (VID-1) against ``versions`` (exact ids or fnmatch patterns); the digits must
        be ASCII (``2.5²`` is no version)."""
        if version in self.versions and (not version or version.isascii()):
            return True
        if version and not (version.isascii() and all(c.isdigit() or c == "." for c in version)):
            return False
        return any(v and fnmatch.fnmatchcase(version, v) for v in self.versions)

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
    def ack_sender(self) -> tuple[str, str] | None:
        """MSH-3/MSH-4 of this channel's ACKs (``identity``), or None to echo MSH-5/MSH-6."""
        if self.identity is None or not self.identity.application:
            return None
        return (self.identity.application, self.identity.facility)

    @property
    def mapping_params(self) -> dict:
        return {
            "authority": self.mrn.authority,
            "id_types": tuple(t.upper() for t in self.mrn.types),
            "timezone": self.timezone,
            **self.params,
        }


def load_channel(path: str | Path) -> tuple[Channel, Located]:
    doc = load_yaml(path, keep_going=True)
    ch = validate(Channel, doc)
    ch._source = doc
    return ch, doc


def cross_check(loaded: list[tuple[Channel, Located]]) -> list[str]:
    """Problems between channel files: a name used twice; a port used by two endpoints; channels
    sharing one endpoint (the same ``listen`` string) whose listener settings differ (``tls``,
    ``limits``) or that could both match one message (``match``: see :meth:`Match.overlaps`)."""
    problems: list[str] = []
    names: dict[str, str] = {}
    ports: dict[str, tuple[str, Channel, Located]] = {}
    for i, (ch, doc) in enumerate(loaded):
        if ch.name in names:
            problems.append(
                f"{doc.where(('name',))}: channel name {ch.name!r} already used in {names[ch.name]}"
            )
        names.setdefault(ch.name, doc.file)
        if not ch.enabled:
            continue
        kind = ch.listen.split(":", 1)[0]
        port = ch.listen if kind == "unix" else ch.listen.split(":")[1]
        if port == "0":
            continue
        if port not in ports:
            ports[port] = (ch.listen, ch, doc)
            continue
        listen, first, first_doc = ports[port]
        if listen != ch.listen:
            problems.append(f"{doc.where(('listen',))}: port {port} already used by {first_doc.file}")
            continue
        problems.extend(
            shared_endpoint_problems(
                ch, doc, [(c, d) for c, d in loaded[:i] if c.enabled and c.listen == ch.listen]
            )
        )
    return problems


def shared_endpoint_problems(ch: Channel, doc: Located, earlier: list[tuple[Channel, Located]]) -> list[str]:
    """``ch`` joins the channels already on its endpoint: the same listener settings, and no
    message that two of them could both take."""
    out = []
    for other, other_doc in earlier:
        where_other = f"{other_doc.where(('match',) if other.match else ('listen',))} (channel {other.name})"
        for key in ("tls", "limits"):
            if getattr(ch, key) != getattr(other, key):
                out.append(
                    f"{doc.where((key,) if key in doc.data else ('listen',))}: {key} differs from "
                    f"{where_other}, which listens on the same endpoint {ch.listen!r}"
                )
        if ch.match is None or ch.match.overlaps(other.match):
            port = ch.listen.split(":")[1] if ":" in ch.listen else ch.listen
            out.append(
                f"{doc.where(('match',) if ch.match else ('listen',))}: port {port} already used by "
                f"{other_doc.file}, and channels {other.name} and {ch.name} could both take the same "
                f"message ({where_other}): channels share an endpoint only with match: blocks "
                f"(MSH-3..MSH-6) that do not overlap"
            )
    return out


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


def fallback_codec_for(channels: Iterable[Channel] | None, name: str | None) -> str:
    """The Python codec that reads a stored message of channel ``name`` when it has no MSH-18:
    that channel's ``fallback_charset``, or Windows-1252 (the default) for a channel that is no
    longer configured. The console, the API and the clerk's resubmit read stored bytes with it,
    so they show the text the engine applied."""
    for ch in channels or ():
        if ch.name == name:
            return ch.fallback_codec
    return DEFAULT_FALLBACK_CODEC
