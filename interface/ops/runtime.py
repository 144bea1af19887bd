"""What the running system is built from: settings, the pipeline, the thread
services, alerts, the ready file (used by ``service`` and ``reload``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, threads

from interface.config.channels import Channel
from interface.config.routing import Router
from interface.engine.controls import Controls, paused_outcome
from interface.engine.outcome import Inbound, Outcome
from interface.engine.processing import Pipeline
from interface.engine.transport import MLLPFactory, bind_description, listening_factory
from interface.ops.settings import Settings  # noqa: F401  (its home was here)
from interface.store.channel_stats import Recorder

log = logging.getLogger("interface.ops.service")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """What the running process knows that the database does not: live connections, counters."""

    def __init__(self, clock=utcnow):
        self.factories: dict[str, MLLPFactory] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.ports: dict[str, int] = {}
        self.bound: dict[str, dict] = {}  # channel -> {endpoint, host, port, started_at}: what was bound
        self.started_at = utcnow()
        self.alerts = None  # the alert Evaluator, when this process runs the alert checks
        self.scan = None  # the scan worker (interface.engine.scan_worker): uploads wake it
        self.clock = clock
        self.controls = Controls()  # what is paused (interface.engine.controls), refreshed by sync
        self.stats = Recorder()  # trends per minute (interface.store.channel_stats), flushed by sync
        self.sync = None  # the ChannelSync (interface.ops.channel_sync) of this process

    def count(self, inbound: Inbound, outcome: Outcome) -> None:
        c = self.counters.setdefault(inbound.channel.name, {})
        now = self.clock()
        for o in outcome.messages:  # each message of a batch or multi-message frame
            c["received"] = c.get("received", 0) + 1
            c[o.status] = c.get(o.status, 0) + 1
            self.stats.intake(inbound.channel.name, o.status, now)

    def refused_paused(self, channel: str) -> None:
        c = self.counters.setdefault(channel, {})
        c["paused"] = c.get("paused", 0) + 1

    def channel_state(self, name: str) -> dict:
        f = self.factories.get(name)
        return {
            "listening": f is not None,
            "connections": f.connections if f else 0,
            "port": self.ports.get(name),
            "counters": dict(self.counters.get(name, {})),
        }


def load_pipeline(settings: Settings, channels: list[Channel]) -> Pipeline:
    mappings = {}
    try:
        from interface.mapping.loader import load_mappings
    except ImportError:  # pragma: no cover - only while the mapping module is being built
        load_mappings = None
    if load_mappings is not None and settings.mappings_dir.exists():
        mappings = load_mappings(settings.mappings_dir, checked=frozenset(settings.checked_mappings))
    doc_settings = None
    try:
        from interface.store import documents

        rules = None
        if settings.rules_file and settings.rules_file.exists():
            from interface.rules.completeness import load_rules

            rules = load_rules(settings.rules_file)
        from interface.store.content import store_dir

        doc_settings = documents.DocumentSettings(
            content_dir=store_dir(settings.url, settings.var_dir, settings.content_dir), rules=rules
        )
    except ImportError:  # pragma: no cover
        pass
    return Pipeline(
        channels, mappings, document_settings=doc_settings, identity_rules=load_identity(settings)
    )


def make_scan_worker(settings: Settings, db, pipeline: Pipeline, clock):
    """The scan worker (drop folders of ``channels/scan/*.yaml``, separation, OCR, filing); it
    runs even without a scan channel, for batches uploaded through the console or the API."""
    from interface.config.scan import load_scan_channels
    from interface.engine.scan_worker import ScanWorker
    from interface.store import documents
    from interface.store.scan_documents import Gate

    doc_settings = pipeline.document_settings or documents.DocumentSettings()
    return ScanWorker(
        db,
        channels=load_scan_channels(settings.channels_dir / "scan"),
        settings=doc_settings,
        gate=Gate(pipeline.identity_rules),
        clock=clock,
    )


def load_identity(settings: Settings):
    """The identity rules (``rules/identity.yaml``, beside the completeness rules); without the
    file, the built-in default (a different person is held, a corrected spelling filed); with no
    rules directory at all (``rules_file`` None), no identity check."""
    if settings.rules_file is None:
        return None
    from interface.rules import identity

    path = settings.rules_file.parent / "identity.yaml"
    return identity.load_rules(path) if path.exists() else identity.DEFAULT_RULES


def start_alerts(settings: Settings, parts: dict, cfg, dispatcher) -> None:
    """Run the alert checks (``interface.ops.alerts``) in this process: at start-up, or when a
    reload finds an ``alerts.yaml`` that was not there before."""
    from interface.ops.alerts import Evaluator

    scheme = "https" if settings.web_tls else "http"
    console = f"{scheme}://{settings.web_host}:{settings.web_port}" if settings.web_port else None
    ev = Evaluator(
        parts["db"],
        cfg,
        channels=parts["channels"],
        clock=parts["clock"],
        dispatcher=dispatcher,
        console_url=console,
    )
    parts["runtime"].alerts = parts["alerts"] = ev
    parts["top"].addService(_ThreadService("alerts", ev.start, ev.stop))


def make_listener(
    settings: Settings, reactor, group, writer, runtime: Runtime, record_event, relay=None
) -> "_ListenService":
    """One listener's MLLP factory and listening service (not started), for one channel or the
    channels sharing an endpoint (``group``: each frame goes to its channel by
    :class:`interface.config.routing.Router`); registers the factory under every channel's name.
    ``relay``: the :class:`interface.engine.connection_acks.ConnectionAckRelay` that sends application
    ACKs back on the connection, for channels that ask for it."""
    group = [group] if isinstance(group, Channel) else list(group)
    ch = group[0]
    router = Router(group)

    controls, stats = runtime.controls, runtime.stats

    def handle(frame: bytes, peer: str):
        target = router.select(frame, peer.rsplit(":", 1)[0])
        if controls.intake_paused(target.name):  # paused: AE/CE, nothing stored (engine.controls)
            runtime.refused_paused(target.name)
            answer = paused_outcome(target, frame, runtime.clock())
            return defer.succeed(answer) if answer is not None else defer.fail(IntakePaused(target.name))
        started = time.monotonic()
        d = writer.submit(Inbound(target, frame, peer))
        d.addCallback(_timed, stats, target.name, started, runtime.clock)
        if relay is not None and relay.wanted(target, frame):
            d.addCallback(relay.expect, factory, peer)
        return d

    factory = MLLPFactory(ch, handle, event_sink=record_event, clock=reactor, channels=group)
    factory.controls = controls
    for member in group:
        runtime.factories[member.name] = factory
    fds = next((settings.inherited_fds[m.name] for m in group if m.name in settings.inherited_fds), None)
    if fds is not None:  # `run --workers N`: the supervisor's shared socket
        from interface.ops.endpoints import AdoptedEndpoint

        ep = AdoptedEndpoint(reactor, *fds)
        ep.description = settings.port_overrides.get(ch.name, ch.listen) + " (shared by the workers)"
    else:
        desc = bind_description(ch, settings.port_overrides.get(ch.name))
        from interface.ops.endpoints import server_endpoint  # not Twisted's parsers (TLS stack)

        ep = server_endpoint(reactor, desc)
        ep.description = desc  # what the console shows as bound (channel_listeners)
    svc = _ListenService(ep, listening_factory(ch, factory), [m.name for m in group], runtime)
    svc.mllp_factory = factory
    return svc


class IntakePaused(Exception):
    """A frame on a paused channel whose sender wants no error ACK: its connection is closed."""


def _timed(outcome, stats, channel: str, started: float, clock):
    stats.ack_latency(channel, clock(), time.monotonic() - started)
    return outcome


class _ThreadService(service.Service):
    def __init__(self, name, start, stop):
        self.name = name
        self._start, self._stop = start, stop

    def startService(self):
        super().startService()
        self._start()

    def stopService(self):
        super().stopService()
        return threads.deferToThread(self._stop)


class _ListenService(StreamServerEndpointService):
    """Records the bound port (``tcp:0`` in tests and benchmarks picks a free one)."""

    def __init__(self, endpoint, factory, names, runtime):
        super().__init__(endpoint, factory)
        self.channel_names = [names] if isinstance(names, str) else list(names)
        self.channel_name = self.channel_names[0]
        self.runtime = runtime
        self._raiseSynchronously = True

    def privilegedStartService(self):
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._bound)

    def _bound(self, port):
        addr = port.getHost()
        endpoint = getattr(self.endpoint, "description", None)
        for name in self.channel_names:
            self.runtime.ports[name] = getattr(addr, "port", None)
            self.runtime.bound[name] = {
                "endpoint": endpoint or "",
                "host": getattr(addr, "host", None),
                "port": getattr(addr, "port", None),
                "started_at": utcnow(),
            }
        if self.runtime.sync is not None:
            self.runtime.sync.changed()  # publish the endpoint at once
        log.info("channel=%s listening on %s", ",".join(self.channel_names), addr)
        return port


def _write_ready_file(path: Path, parts: dict) -> None:
    """Tell a supervising process (tests, benchmarks, scripts) which ports were bound.

    Listeners bind synchronously in startService, so the ports are known here; the file is
    written atomically (temp file + rename) so a reader never sees half of it."""
    import json
    import os

    runtime = parts["runtime"]
    web = parts.get("web")
    doc = {
        "pid": os.getpid(),
        "ports": dict(runtime.ports),
        "web_port": getattr(web, "port", None) if web is not None else None,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
