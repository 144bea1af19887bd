"""Build the running system in one function: listeners, writer, workers, web console.

Nothing else reads YAML, argv or the environment: ``cli`` turns those into :class:`Settings`,
and :func:`make_service` turns Settings into a Twisted ``MultiService``.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints, threads

from . import db as dbmod
from .channels import Channel, load_channels
from .engine import Engine, Inbound, Outcome
from .processing import Pipeline, Worker
from .routing import Router, endpoint_groups
from .transport import MLLPFactory, bind_description, listening_factory
from .writer import GroupCommitWriter

log = logging.getLogger("interface.service")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Settings:
    channels_dir: Path = Path("channels")
    mappings_dir: Path = Path("mappings")
    rules_file: Path | None = Path("rules/completeness.yaml")
    var_dir: Path = Path("var")
    db_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int | None = 8080
    web_tls: tuple[str, str] | None = None  # (certificate, key): the console over https (--web-tls)
    workers: int = 1
    channel_names: list[str] = field(default_factory=list)  # empty: all enabled channels
    port_overrides: dict[str, str] = field(default_factory=dict)  # channel -> endpoint (tests, bench)
    create_schema: bool = True
    ready_file: Path | None = None  # written as JSON {"ports": {channel: port}, "web_port": n} once listening
    inherited_fds: dict[str, tuple[int, int]] = field(default_factory=dict)  # channel -> (fd, family): run --workers N
    pid_file: Path | None = None  # written by `run` (`interface reload` finds the engine by it)
    alerts_file: Path | None = None  # alerts.yaml (interface.alerts); None or absent: no alerts
    content_dir: Path | None = None  # a shared document content directory (content.store_dir)
    reload_events: bool = True  # record config_reloaded / config_rejected (under --workers N only
    # child 0 does, so that a reload every child makes in place is one event, not N)

    @property
    def url(self) -> str:
        return dbmod.resolve_url(self.db_url, self.var_dir)


class Runtime:
    """What the running process knows that the database does not: live connections, counters."""

    def __init__(self):
        self.factories: dict[str, MLLPFactory] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.ports: dict[str, int] = {}
        self.started_at = utcnow()
        self.alerts = None  # the alert Evaluator, when this process runs the alert checks

    def count(self, inbound: Inbound, outcome: Outcome) -> None:
        c = self.counters.setdefault(inbound.channel.name, {})
        for o in outcome.messages:  # each message of a batch or multi-message frame
            c["received"] = c.get("received", 0) + 1
            c[o.status] = c.get(o.status, 0) + 1

    def channel_state(self, name: str) -> dict:
        f = self.factories.get(name)
        return {"listening": f is not None, "connections": f.connections if f else 0,
                "port": self.ports.get(name), "counters": dict(self.counters.get(name, {}))}


def load_pipeline(settings: Settings, channels: list[Channel]) -> Pipeline:
    mappings = {}
    try:
        from .mapping import load_mappings
    except ImportError:  # pragma: no cover - only while the mapping module is being built
        load_mappings = None
    if load_mappings is not None and settings.mappings_dir.exists():
        mappings = load_mappings(settings.mappings_dir)
    doc_settings = None
    try:
        from . import documents

        rules = None
        if settings.rules_file and settings.rules_file.exists():
            from .completeness import load_rules

            rules = load_rules(settings.rules_file)
        from .content import store_dir

        doc_settings = documents.DocumentSettings(
            content_dir=store_dir(settings.url, settings.var_dir, settings.content_dir), rules=rules)
    except ImportError:  # pragma: no cover
        pass
    return Pipeline(channels, mappings, document_settings=doc_settings)


def make_service(settings: Settings, reactor=None, clock=utcnow) -> tuple[service.MultiService, dict]:
    """Every listener, the journal writer, the workers and the web console, from settings.

    Returns the MultiService and a dict of the parts (engine, writer, workers, runtime...) for
    tests and the CLI.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    channels = [c for c in load_channels(settings.channels_dir) if c.enabled
                and (not settings.channel_names or c.name in settings.channel_names)]
    db = dbmod.make_engine(settings.url)
    if settings.create_schema:
        dbmod.create_schema(db)
    pipeline = load_pipeline(settings, channels)
    workers = [Worker(db, pipeline, clock=clock) for _ in range(max(1, settings.workers))]
    engine = Engine(db, clock=clock, processor=workers[0])
    from .outbound import outbound_workers  # one per MLLP/file destination and application-ACK address

    outbound = outbound_workers(db, pipeline, channels, clock=clock)
    try:
        from .validation import structure_validator

        engine.validator = structure_validator
    except ImportError:  # pragma: no cover
        pass
    writer = GroupCommitWriter(engine, reactor.callFromThread)
    runtime = Runtime()
    from .connection_acks import ConnectionAckRelay  # ack.same_connection

    relay = ConnectionAckRelay(db, pipeline, clock=clock, call=reactor.callFromThread)

    def on_outcome(inbound: Inbound, outcome: Outcome) -> None:
        runtime.count(inbound, outcome)
        statuses = {o.status for o in outcome.messages}
        if "accepted" in statuses:  # something is queued for the store workers
            for w in workers:
                w.wake.set()
        if statuses & {"accepted", "processed"}:  # outbound items and application ACKs
            for w in outbound:  # are queued even when the store item was applied inline
                w.wake.set()
            relay.wake.set()

    writer.on_outcome = on_outcome

    def record_event(**kw) -> None:
        from . import journal

        def write():
            with db.begin() as conn:
                journal.record_event(conn, at=clock(), **kw)

        threads.deferToThread(write).addErrback(lambda f: log.error("event not recorded: %s", f.getErrorMessage()))

    top = service.MultiService()
    top.addService(_ThreadService("writer", writer.start, writer.stop))
    for w in workers:
        top.addService(_ThreadService("worker", w.start, w.stop))
    for w in outbound:
        top.addService(_ThreadService(f"outbound {w.lane}", w.start, w.stop))
    top.addService(_ThreadService("connection acks", relay.start, relay.stop))
    listeners = {}  # endpoint key (interface.routing) -> listening service
    for key, group in endpoint_groups(channels, settings.port_overrides).items():
        listeners[key] = make_listener(settings, reactor, group, writer, runtime, record_event, relay)
        top.addService(listeners[key])
    parts = dict(db=db, engine=engine, writer=writer, workers=workers, runtime=runtime,
                 channels=channels, pipeline=pipeline, outbound=outbound, listeners=listeners, relay=relay,
                 record_event=record_event, clock=clock, top=top)
    from .reload import load_alerts_config

    alerts = load_alerts_config(settings, channels)  # the same check and notifiers as a reload's
    if alerts is not None:
        start_alerts(settings, parts, *alerts)
    if settings.web_port is not None:
        try:
            from .web import create_app, WebThread
        except ImportError:  # pragma: no cover - web console not built yet
            create_app = None
        if create_app is not None:
            app = create_app(db, channels=channels, runtime=runtime,
                             document_settings=pipeline.document_settings)
            web = WebThread(app, settings.web_host, settings.web_port, tls=settings.web_tls)
            top.addService(_ThreadService("web", web.start, web.stop))
            parts["web"] = web
            parts["app"] = app
    return top, parts


def start_alerts(settings: Settings, parts: dict, cfg, dispatcher) -> None:
    """Run the alert checks (``interface.alerts``) in this process: at start-up, or when a
    reload finds an ``alerts.yaml`` that was not there before."""
    from .alerts import Evaluator

    scheme = "https" if settings.web_tls else "http"
    console = f"{scheme}://{settings.web_host}:{settings.web_port}" if settings.web_port else None
    ev = Evaluator(parts["db"], cfg, channels=parts["channels"], clock=parts["clock"], dispatcher=dispatcher,
                   console_url=console)
    parts["runtime"].alerts = parts["alerts"] = ev
    parts["top"].addService(_ThreadService("alerts", ev.start, ev.stop))


def make_listener(settings: Settings, reactor, group, writer, runtime: Runtime,
                  record_event, relay=None) -> "_ListenService":
    """One listener's MLLP factory and listening service (not started), for one channel or the
    channels sharing an endpoint (``group``: each frame goes to its channel by
    :class:`interface.routing.Router`); registers the factory under every channel's name.
    ``relay``: the :class:`interface.connection_acks.ConnectionAckRelay` that sends application
    ACKs back on the connection, for channels that ask for it."""
    group = [group] if isinstance(group, Channel) else list(group)
    ch = group[0]
    router = Router(group)

    def handle(frame: bytes, peer: str):
        target = router.select(frame, peer.rsplit(":", 1)[0])
        d = writer.submit(Inbound(target, frame, peer))
        if relay is not None and relay.wanted(target, frame):
            d.addCallback(relay.expect, factory, peer)
        return d

    factory = MLLPFactory(ch, handle, event_sink=record_event, clock=reactor, channels=group)
    for member in group:
        runtime.factories[member.name] = factory
    fds = next((settings.inherited_fds[m.name] for m in group if m.name in settings.inherited_fds), None)
    if fds is not None:  # `run --workers N`: the supervisor's shared socket
        from .cluster import AdoptedEndpoint

        ep = AdoptedEndpoint(reactor, *fds)
    else:
        ep = endpoints.serverFromString(reactor, bind_description(ch, settings.port_overrides.get(ch.name)))
    svc = _ListenService(ep, listening_factory(ch, factory), [m.name for m in group], runtime)
    svc.mllp_factory = factory
    return svc


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
        for name in self.channel_names:
            self.runtime.ports[name] = getattr(addr, "port", None)
        log.info("channel=%s listening on %s", ",".join(self.channel_names), addr)
        return port


def run(settings: Settings) -> int:
    """``interface run``: start everything and serve until SIGINT/SIGTERM; SIGHUP reloads the
    configuration (:mod:`interface.reload`)."""
    from twisted.internet import reactor

    from .reload import Reloader, install_sighup, pid_file

    from .logsetup import configure as configure_logging

    configure_logging()  # INFO to stderr, SQL parameters and quoted values redacted (logsetup)
    top, parts = make_service(settings, reactor)
    top.startService()
    reloader = Reloader(settings, parts, reactor)
    install_sighup(reactor, reloader)
    if settings.ready_file is not None:
        _write_ready_file(settings.ready_file, parts)
    pid = pid_file(settings.pid_file)
    for ch in parts["channels"]:
        log.info("channel=%s endpoint=%s", ch.name, settings.port_overrides.get(ch.name, ch.listen))
    if "web" in parts:
        log.info("web console and API on %s://%s:%s/", "https" if settings.web_tls else "http",
                 settings.web_host, settings.web_port)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    with pid:
        reactor.run()
    return 0


def _write_ready_file(path: Path, parts: dict) -> None:
    """Tell a supervising process (tests, benchmarks, scripts) which ports were bound.

    Listeners bind synchronously in startService, so the ports are known here; the file is
    written atomically (temp file + rename) so a reader never sees half of it."""
    import json
    import os

    runtime = parts["runtime"]
    web = parts.get("web")
    doc = {"pid": os.getpid(), "ports": dict(runtime.ports),
           "web_port": getattr(web, "port", None) if web is not None else None}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def ready_event() -> threading.Event:  # pragma: no cover - helper for embedding
    return threading.Event()
