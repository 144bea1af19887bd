"""Outbound delivery: MLLP peers, file drops and enhanced-mode application ACKs.

The :class:`OutboundWorker` takes the items of outbound lanes (``out:`` keys, see
``interface.engine.destinations``), oldest first and only the head of each key, and delivers each one
**outside** any database transaction on SQLite (so a slow peer never holds the write lock), or
inside a ``FOR UPDATE SKIP LOCKED`` claim on PostgreSQL (so two engine processes never deliver
the same key at once). Then it records the result:

==========================================  ==============================================
downstream answer                           item
==========================================  ==============================================
AA / CA (MSA-2 = the sent MSH-10)            done
AE / CE                                      retry per policy (``on_ae: error``: error queue)
AR / CR                                      error queue, reason ``downstream_refused``
no connection, closed, no ACK in time        retry per policy (``downstream_unavailable``)
==========================================  ==============================================

A retried item keeps its keys, so later messages for the same key wait behind it: order per key
is kept, and delivery is at least once (a peer that lost our ACK gets the message again, with
the same MSH-10, which is what MLLP receivers de-duplicate on). ACKs whose MSA-2 is not the sent
control id (a late answer to an earlier, timed-out send) are skipped, never taken for ours.

:class:`MLLPSender` is the blocking client (one connection per destination, one message in
flight, connect timeout, ACK timeout, reconnect; TLS with the destination's ``tls:`` block, see
:func:`client_tls`). A TLS set-up that fails — a certificate file missing or unreadable, the
peer's certificate not trusted or not for that name, our client certificate refused — is a
``downstream_unavailable`` failure like a refused connection: retried per policy, with the reason
on the item, because it is fixed outside the message (a certificate renewed, a file put back). :func:`queue_application_ack` builds the
application ACK (MSH-16 AL/ER/SU) once a message is processed and queues it to the channel's
``ack.application_ack`` return address as destination ``application_ack``.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine as DBEngine
from sqlalchemy.exc import SQLAlchemyError

from interface.config.channels import Channel, ClientTls, Destination
from interface.engine.client import parse_ack, tls_context
from interface.engine.controls import NO_CONTROLS
from interface.engine.destinations import APPLICATION_ACK, CONNECTION_ACK, drop_file, file_name, lane_prefix
from interface.engine.processing import since_created
from interface.hl7.errors import FramingError, HL7Error, Location, ParseError, PermanentError, TransientError
from interface.hl7.framing import FrameDecoder, frame
from interface.hl7.message import decode, header_from_text
from interface.store import workqueue
from interface.store.schema import messages

log = logging.getLogger("interface.engine.outbound")


class DownstreamUnavailable(TransientError):
    """No connection, connection lost, or no matching ACK in time."""

    reason = "downstream_unavailable"


class DownstreamError(TransientError):
    """The peer answered AE/CE: it may accept the message later."""

    reason = "downstream_refused"


class _Closed(Exception):
    pass


@dataclass
class AckReply:
    code: str  # MSA-1
    control_id: str  # MSA-2
    text: str
    raw: bytes


class MLLPSender:
    """A blocking MLLP client for one downstream peer. ``send`` returns the ACK whose MSA-2
    matches the sent MSH-10, or raises :class:`DownstreamUnavailable`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        connect: Callable = socket.create_connection,
        max_frame: int = 16 * 1024 * 1024,
        tls: Callable[[], ssl.SSLContext] | ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        expect_ack: bool = True,
    ):
        self.host, self.port = host, port
        self.expect_ack = expect_ack  # False: the peer never answers (see Destination.expect_ack)
        self.tls = tls  # a context, or a function making one (called at each connect)
        self.server_hostname = server_hostname or host
        self.connect_timeout, self.ack_timeout = connect_timeout, ack_timeout
        self._connect_fn = connect
        self.max_frame = max_frame
        self.sock: socket.socket | None = None
        self.decoder = FrameDecoder(max_frame)
        self._frames: list[bytes] = []
        self.connects = 0
        self.skipped_acks = 0  # ACK frames for another control id (late answers)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.decoder = FrameDecoder(self.max_frame)
        self._frames = []

    def _connect(self) -> None:
        try:
            self.sock = self._connect_fn((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            self.sock = None
            raise DownstreamUnavailable(
                f"cannot connect to {self.host}:{self.port}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if self.tls is not None:
            self._start_tls()
        self.connects += 1

    def _start_tls(self) -> None:
        """Wrap the new connection in TLS and finish the handshake within the connect timeout."""
        where = f"{self.host}:{self.port}"
        try:
            ctx = self.tls() if callable(self.tls) else self.tls
        except (OSError, ssl.SSLError, ValueError) as exc:  # a certificate file missing or bad
            self.close()
            raise DownstreamUnavailable(
                f"TLS to {where} cannot be set up: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        try:
            self.sock.settimeout(self.connect_timeout)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise DownstreamUnavailable(
                f"TLS to {where}: the peer's certificate is not trusted ({exc.verify_message})"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise DownstreamUnavailable(
                f"TLS handshake with {where} failed ({getattr(exc, 'reason', None) or type(exc).__name__})"
            ) from None

    def send(self, raw: bytes) -> AckReply | None:
        """Send one message and wait for its ACK; None when MSH-15 is NE (no ACK will come)."""
        try:
            header = header_from_text(decode(raw).text)
        except ParseError as exc:
            raise PermanentError(f"the stored message cannot be read: {exc}", reason="unparseable") from None
        control_id = header.control_id
        no_reply = not self.expect_ack or (header.enhanced and header.accept_ack_type.upper() == "NE")
        for attempt in (1, 2):
            if no_reply and self.sock is not None:
                self._discard_unread()  # answers that came anyway; notices a closed connection
            fresh = self.sock is None
            if fresh:
                self._connect()
            try:
                self.sock.settimeout(self.ack_timeout)
                self.sock.sendall(frame(raw))
                if no_reply:
                    return None
                return self._read_ack(control_id)
            except (_Closed, ConnectionError) as exc:
                self.close()
                if fresh or attempt == 2:
                    raise DownstreamUnavailable(
                        f"{self.host}:{self.port} closed the connection without an ACK ({type(exc).__name__})"
                    ) from None
                # a reused connection the peer had closed while idle: reconnect, send once more
            except (socket.timeout, TimeoutError):
                self.close()  # a late ACK must never be read as the next message's
                raise DownstreamUnavailable(
                    f"no ACK from {self.host}:{self.port} within {self.ack_timeout:g} s"
                ) from None
            except (OSError, FramingError) as exc:
                self.close()
                raise DownstreamUnavailable(f"{self.host}:{self.port}: {type(exc).__name__}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard_unread(self) -> None:
        """Before a send that expects no reply: read and drop whatever the peer sent meanwhile
        (so its answers never fill the socket), and close a connection the peer has closed
        (so the send goes on a fresh one instead of into a dead socket)."""
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.close()
                    return
                self.skipped_acks += len(self.decoder.feed(data))
        except (BlockingIOError, ssl.SSLWantReadError):
            self.sock.setblocking(True)
            self._frames = []
        except (OSError, FramingError):
            self.close()

    def _read_ack(self, control_id: str) -> AckReply:
        deadline = time.monotonic() + self.ack_timeout
        while True:
            while self._frames:
                data = self._frames.pop(0)
                code, ctl, text = parse_ack(data)
                if ctl == control_id:
                    return AckReply(code, ctl, text, data)
                self.skipped_acks += 1
                log.warning("skipped an ACK for another control id (peer %s:%s)", self.host, self.port)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise _Closed()
            self._frames.extend(self.decoder.feed(data))


def client_tls(tls: ClientTls) -> Callable[[], ssl.SSLContext]:
    """The SSL context maker for a ``tls:`` block: TLS 1.2 or later, the peer checked against
    ``ca`` (or the system's trust store) and ``server_name``, our certificate if given. Made at
    each connect, so a renewed certificate file is picked up by the next connection."""

    def make() -> ssl.SSLContext:
        ctx = tls_context(tls.ca, tls.cert, tls.key, insecure=not tls.verify)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    return make


def sender_for(dest: Destination) -> "MLLPSender":
    """The MLLPSender for a configured destination (timeouts, TLS)."""
    tls = dest.tls
    if tls is not None and not tls.verify:
        log.warning("destination %s: TLS without checking the peer's certificate (verify: false)", dest.name)
    return MLLPSender(
        dest.host,
        dest.port,
        connect_timeout=dest.connect_timeout_seconds,
        ack_timeout=dest.timeout_seconds,
        tls=client_tls(tls) if tls is not None else None,
        server_hostname=tls.server_name if tls is not None else None,
        expect_ack=dest.expect_ack,
    )


def check_ack(reply: AckReply | None, dest: Destination) -> None:
    """Turn the downstream's answer into done (return), retry or error queue (raise)."""
    if reply is None or reply.code in ("AA", "CA"):
        return
    what = f"{dest.name} answered {reply.code}" + (f": {reply.text}" if reply.text else "")
    if reply.code in ("AR", "CR"):
        raise PermanentError(f"downstream refused: {what}", reason="downstream_refused")
    if reply.code in ("AE", "CE"):
        if dest.on_ae == "error":
            raise PermanentError(f"downstream error: {what}", reason="downstream_refused")
        raise DownstreamError(f"downstream error: {what}")
    raise DownstreamUnavailable(f"{dest.name} answered an unknown code {reply.code!r}")


def needs_outbound(channels: list[Channel]) -> bool:
    """Whether any channel has a destination the OutboundWorker delivers."""
    return bool(outbound_lanes(channels))


def outbound_lanes(channels: list[Channel]) -> list[str]:
    """The lane prefix of every outbound destination (and application-ACK return address)."""
    lanes = []
    for ch in channels:
        lanes += [lane_prefix(ch.name, d.name) for d in ch.destinations if d.type != "store"]
        if ch.ack.application_ack is not None:
            lanes.append(lane_prefix(ch.name, APPLICATION_ACK))
    return lanes


def outbound_workers(db: DBEngine, pipeline, channels: list[Channel], *, clock) -> list["OutboundWorker"]:
    """One worker (thread) per outbound destination: a peer that hangs until its ACK timeout
    delays only its own lane, never another destination's deliveries."""
    return [OutboundWorker(db, pipeline, clock=clock, lane=lane) for lane in outbound_lanes(channels)]


class OutboundWorker:
    """Delivers outbound items in order per key; safe to run one per process (several on PG)."""

    def __init__(
        self,
        db: DBEngine,
        pipeline,
        *,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        lane: str | None = None,
        batch: int = 64,
        sender_factory: Callable[[Destination], MLLPSender] | None = None,
    ):
        self.db = db
        self.pipeline = pipeline
        self.clock = clock
        self.rng = rng or random.Random()
        self.lane = lane
        self.batch = batch
        self.sender_factory = sender_factory or sender_for
        self.senders: dict[tuple, MLLPSender] = {}
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.controls = NO_CONTROLS  # a paused destination's lane waits (interface.engine.controls)

    def sender(self, channel: str, dest: Destination) -> MLLPSender:
        key = (
            channel,
            dest.name,
            dest.host,
            dest.port,
            dest.tls.model_dump_json() if dest.tls is not None else None,
            dest.expect_ack,
        )
        s = self.senders.get(key)
        if s is None:
            s = self.senders[key] = self.sender_factory(dest)
        return s

    def close(self) -> None:
        for s in self.senders.values():
            s.close()

    # -- one round ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Deliver what is runnable now; returns how many deliveries were attempted."""
        now = self.clock()
        with self.db.connect() as conn:
            candidates = [
                c
                for c in workqueue.runnable(
                    conn,
                    now,
                    self.batch,
                    outbound=True,
                    lane=self.lane,
                    exclude=self.controls.destinations or None,
                )
                if c.destination != CONNECTION_ACK
            ]  # the connection relay's (connection_acks)
            if not candidates:
                return 0
            msgs = {
                r.id: r
                for r in conn.execute(
                    select(
                        messages.c.id,
                        messages.c.raw,
                        messages.c.control_id,
                        messages.c.message_type,
                        messages.c.received_at,
                    ).where(messages.c.id.in_({c.message_id for c in candidates}))
                )
            }
            conn.rollback()
        down: set[tuple[str, str]] = set()
        attempted = 0
        for cand in candidates:
            lane = (cand.channel, cand.destination)
            if lane in down or self._stop.is_set():
                continue  # that peer is down: its other keys wait for the next round
            try:
                exc = self._deliver_claimed(cand, msgs[cand.message_id])
            except SQLAlchemyError as db_exc:
                log.warning(
                    "outbound: cannot record item %s (%s); it will be delivered again",
                    cand.id,
                    type(db_exc).__name__,
                )
                return attempted
            attempted += 1
            if isinstance(exc, DownstreamUnavailable):
                down.add(lane)
        return attempted

    def _deliver_claimed(self, cand, msg) -> Exception | None:
        if self.db.dialect.name == "postgresql":
            # Hold the row lock while delivering: no other process can take this key meanwhile.
            with self.db.begin() as conn:
                rows = workqueue.runnable(conn, self.clock(), 1, lock=True, ids=[cand.id])
                if not rows or rows[0].message_id != cand.message_id:
                    return None
                exc = self._deliver(rows[0], msg)
                self._record(conn, rows[0], exc, self.clock())
                return exc
        # SQLite: a transaction is a write lock; deliver first, then record if nothing changed.
        exc = self._deliver(cand, msg)
        with self.db.begin() as conn:
            rows = workqueue.runnable(conn, self.clock(), 1, ids=[cand.id])
            if not rows or rows[0].attempts != cand.attempts or rows[0].message_id != cand.message_id:
                return exc  # a clerk acted on it meanwhile
            self._record(conn, rows[0], exc, self.clock())
        return exc

    def _deliver(self, item, msg) -> Exception | None:
        try:
            ch, dest = self.pipeline.destination(item.channel, item.destination)
            if dest.type == "mllp":
                check_ack(self.sender(ch.name, dest).send(msg.raw), dest)
            elif dest.type == "file":
                received = msg.received_at.strftime("%Y%m%d%H%M%S") if msg.received_at else ""
                name = file_name(
                    dest.filename,
                    {
                        "channel": item.channel,
                        "destination": dest.name,
                        "message_id": item.message_id,
                        "item_id": item.id,
                        "control_id": msg.control_id,
                        "received": received,
                        "message_type": (msg.message_type or "").replace("^", "_"),
                    },
                )
                drop_file(dest.directory, name, msg.raw)
            else:
                raise PermanentError(
                    f"destination {dest.name} ({dest.type}) is not an outbound destination",
                    reason="processing_error",
                )
        except (TransientError, HL7Error) as exc:
            return exc
        except Exception as exc:  # a bug: the item waits for a clerk instead of looping
            log.exception("outbound item=%s unexpected failure", item.id)
            return PermanentError(
                f"unexpected {type(exc).__name__} while delivering", reason="processing_error"
            )
        return None

    def _record(self, conn, item, exc: Exception | None, now: datetime) -> None:
        attempts = item.attempts + 1
        if exc is None:
            workqueue.mark_done(conn, item.id, item.message_id, now, attempts)
            self.delivered += 1
            outcome = "done"
        elif isinstance(exc, TransientError):
            policy = self.pipeline.retry_policy(item.channel, item.destination)
            if policy.exhausted(attempts):
                workqueue.mark_error(
                    conn, item.id, item.message_id, now, attempts, str(exc), exc.reason, None
                )
                self.failed += 1
                outcome = "error"
            else:
                workqueue.mark_retry(
                    conn, item.id, now, attempts, policy.delay(attempts, self.rng), str(exc), exc.reason
                )
                outcome = "retry"
        else:
            loc = getattr(exc, "location", None)
            workqueue.mark_error(
                conn,
                item.id,
                item.message_id,
                now,
                attempts,
                str(exc),
                getattr(exc, "reason", "processing_error"),
                str(loc) if isinstance(loc, Location) and loc.segment else None,
            )
            self.failed += 1
            outcome = "error"
        stats = self.pipeline.stats
        if stats is not None and outcome != "retry":
            stats.delivery(item.channel, item.destination, outcome == "done", now, since_created(item, now))
        log.info(
            "item=%s channel=%s destination=%s attempt=%d outcome=%s",
            item.id,
            item.channel,
            item.destination,
            attempts,
            outcome,
        )

    # -- the thread --------------------------------------------------------------------------

    def start(self, idle_wait: float = 0.5) -> None:
        from interface.engine.polling import polling_thread

        self._thread = polling_thread(
            "outbound", self.run_once, self._stop, self.wake, idle_wait, on_exit=self.close
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        for s in list(self.senders.values()):  # unblock a send waiting on a silent peer
            sock = getattr(s, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout)


# -- enhanced mode: application ACKs ------------------------------------------------------------
