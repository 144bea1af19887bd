"""A blocking MLLP client: ``interface send`` and the test/benchmark senders.

Sends one message at a time on one connection and waits for its ACK (MLLP allows one in flight);
matches the ACK by MSA-2; optional TLS with client certificates.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from interface.hl7.errors import ParseError
from interface.hl7.framing import FrameDecoder, frame
from interface.hl7.message import (
    DEFAULT_ENCODING,
    decode,
    has_several_messages,
    header_from_text,
    is_batch,
    split_messages,
    unescape,
)


@dataclass
class AckResult:
    control_id: str
    code: str  # MSA-1, or "--" when no ACK came back
    text: str = ""
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        """Accepted: AA or CA. (With MSH-15 NE nothing comes back, so nothing is confirmed.)"""
        return self.code in ("AA", "CA")


def parse_ack(data: bytes) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, the reason: :func:`ack_reason`) of an ACK message."""
    text = decode(data).text
    code = ctl = ""
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA"):
            f = seg.split(seg[3]) if len(seg) > 3 else []
            code = f[1] if len(f) > 1 else ""
            ctl = f[2] if len(f) > 2 else ""
            break
    return code, ctl, ack_reason(text)


def ack_reason(text: str) -> str:
    """Why a receiver answered AE/AR, as people wrote it: MSA-3 (text message), else the first
    ERR's ERR-8 (user message), else ERR-3's text (CWE-2), else a v2.1-v2.4 ERR-1's code text
    (ELD-4, CE-2), else the bare error code (ERR-3.1 / ERR-1.4.1). Never ERR-4, the severity
    letter. Escape sequences are resolved with the ACK's own delimiters. Empty when none."""
    segs = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if len(s) > 3]
    enc = DEFAULT_ENCODING
    for s in segs:
        if s.startswith("MSH"):
            try:
                enc = header_from_text(s).encoding
            except ParseError:
                pass
            break
    fs, cs, ss = enc.field, enc.component or "^", enc.subcomponent or "&"

    def field(seg: str, n: int) -> str:
        parts = seg.split(fs)
        v = parts[n] if len(parts) > n else ""
        return v.split(enc.repetition)[0] if enc.repetition else v

    def part(value: str, sep: str, n: int) -> str:
        bits = value.split(sep)
        return bits[n - 1] if len(bits) >= n else ""

    def clean(v: str) -> str:
        return unescape(v, enc).strip() if v else ""

    for s in segs:
        if s.startswith("MSA") and clean(field(s, 3)):
            return clean(field(s, 3))
    errs = [s for s in segs if s.startswith("ERR")]
    for getter in (
        lambda s: field(s, 8),  # ERR-8 user message
        lambda s: part(field(s, 3), cs, 2),  # ERR-3 CWE-2 text
        lambda s: part(part(field(s, 1), cs, 4), ss, 2),  # v2.3 ERR-1 ELD-4 CE-2
        lambda s: part(field(s, 3), cs, 1),  # ERR-3 code
        lambda s: part(part(field(s, 1), cs, 4), ss, 1),
    ):  # ERR-1 ELD-4 code
        for s in errs:
            v = clean(getter(s))
            if v:
                return v
    return ""


def messages_in_file(path: str | Path) -> list[bytes]:
    """Every message in a file: one, several, or an FHS/BHS batch; CR, LF or CRLF; MLLP-framed
    files are unwrapped. Each message is re-joined with CR as MLLP expects."""
    raw = Path(path).read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")
    d = decode(raw)
    return [m.encode(d.charset, "replace") for m in split_messages(d.text)]


class MLLPClient:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ):
        self.host, self.port, self.timeout = host, port, timeout
        self.tls = tls
        self.server_hostname = server_hostname or host
        self.sock: socket.socket | None = None
        self.decoder = FrameDecoder()
        self._frames: list[bytes] = []
        self._unanswered: set[str] = set()  # control ids sent with MSH-15 NE
        self._sent: set[str] = set()  # control ids sent on this connection
        self.late: list[bytes] = []  # frames for an earlier message (application ACKs sent back
        # on this connection, ack.same_connection), read while waiting for another's ACK

    def connect(self) -> "MLLPClient":
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.tls is not None:
            s = self.tls.wrap_socket(s, server_hostname=self.server_hostname)
        s.settimeout(self.timeout)
        self.sock = s
        return self

    def close(self) -> None:
        self._frames.clear()
        self.decoder = FrameDecoder()
        self._unanswered.clear()
        self._sent.clear()
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, message: bytes) -> bytes | None:
        """Send one message, return the ACK frame (None if the connection closed first)."""
        if self.sock is None:
            self.connect()
        self.sock.sendall(frame(message))
        return self.read_frame()

    def read_frame(self) -> bytes | None:
        while not self._frames:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._frames.extend(self.decoder.feed(data))
        return self._frames.pop(0)

    def send_frame(self, payload: bytes) -> list[AckResult]:
        """Send one frame that may hold several messages and read one ACK frame per message
        answered (see :func:`expected_acks`), in order; "--" results for those that never came."""
        if self.sock is None:
            self.connect()
        want = expected_acks(payload)
        out: list[AckResult] = []
        try:
            self.sock.sendall(frame(payload))
            for ctl in want:
                ack = self.read_frame()
                if ack is None:
                    self.close()
                    break
                code, ack_ctl, text = parse_ack(ack)
                if ack_ctl and ctl and ack_ctl != ctl:
                    text = f"ACK is for control id {ack_ctl}"
                out.append(AckResult(ctl, code, text, ack))
        except (OSError, socket.timeout) as exc:
            self.close()
            out.append(AckResult(want[len(out)] if len(out) < len(want) else "", "--", f"no ACK: {exc}"))
        for ctl in want[len(out) :]:
            out.append(AckResult(ctl, "--", "connection closed without an ACK"))
        return out

    def send(self, message: bytes) -> AckResult:
        """Send one message and wait for its ACK. A payload holding several messages (no
        FHS/BHS) is answered with one ACK each: all are read (:meth:`send_frame`), so the
        connection stays in step, and the first one not accepted (else the first) is returned."""
        text = decode(message).text
        if has_several_messages(text) and not is_batch(text) and len(expected_acks(message)) > 1:
            results = self.send_frame(message)
            return next((r for r in results if not r.ok), results[0])
        try:
            header = header_from_text(text)
            ctl = header.control_id
        except Exception:
            header, ctl = None, ""
        if header is not None and header.accept_ack_type == "NE":
            # Enhanced mode, "never acknowledge": the receiver will not answer; don't wait for it.
            if self.sock is None:
                self.connect()
            self.sock.sendall(frame(message))
            self._unanswered.add(ctl)
            return AckResult(ctl, "NE", "no accept ACK requested (MSH-15 NE)")
        try:
            ack = self.send_raw(message)
            self._sent.add(ctl)
            while ack is not None:
                code, ack_ctl, text = parse_ack(ack)
                # A receiver may still answer an NE message (e.g. it could not store it): that
                # answer belongs to the earlier message, not to this one.
                if ack_ctl and ack_ctl != ctl and ack_ctl in self._unanswered:
                    self._unanswered.discard(ack_ctl)
                    ack = self.read_frame()
                    continue
                if ack_ctl and ack_ctl != ctl and ack_ctl in self._sent:  # an earlier message's
                    self.late.append(ack)  # application ACK on this connection
                    ack = self.read_frame()
                    continue
                break
        except (OSError, socket.timeout) as exc:
            self.close()
            return AckResult(ctl, "--", f"no ACK: {exc}")
        if ack is None:
            self.close()
            return AckResult(ctl, "--", "connection closed without an ACK")
        if ack_ctl and ctl and ack_ctl != ctl:
            return AckResult(ctl, code, f"ACK is for control id {ack_ctl}", ack)
        return AckResult(ctl, code, text, ack)


def expected_acks(payload: bytes) -> list[str]:
    """The control ids a receiver answers for one frame: one per message of a frame holding
    several without FHS/BHS (each answered with its own ACK frame), except MSH-15 NE ones; a
    batch or a single message is answered with one frame (its first control id)."""
    text = decode(payload).text
    try:
        texts = [text] if is_batch(text) else split_messages(text)
    except Exception:
        return [""]
    out = []
    for t in texts:
        try:
            h = header_from_text(t)
        except Exception:
            out.append("")
            continue
        if h.accept_ack_type != "NE":
            out.append(h.control_id)
    return out


def tls_context(ca: str | None, cert: str | None, key: str | None, insecure: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
