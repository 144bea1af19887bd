"""Build the running system in one function: listeners, writer, workers, web console.

Nothing else reads YAML, argv or the environment: ``cli`` turns those into :class:`Settings`,
and :func:`make_service` turns Settings into a Twisted ``MultiService``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from twisted.application import service
from twisted.internet import threads

from interface.config.channels import load_channels
from interface.config.routing import endpoint_groups
from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound, Outcome
from interface.engine.processing import Worker
from interface.engine.writer import GroupCommitWriter
from interface.ops.channel_sync import ChannelSync
from interface.ops.runtime import (
    Runtime,
    Settings,
    _ThreadService,
    _write_ready_file,
    load_pipeline,
    make_listener,
    make_scan_worker,
    start_alerts,
    utcnow,
)
from interface.store import db as dbmod

log = logging.getLogger("interface.ops.service")


def make_service(settings: Settings, reactor=None, clock=utcnow) -> tuple[service.MultiService, dict]:
    """Every listener, the journal writer, the workers and the web console, from settings.

    Returns the MultiService and a dict of the parts (engine, writer, workers, runtime...) for
    tests and the CLI.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    channels = [
        c
        for c in load_channels(settings.channels_dir)
        if c.enabled and (not settings.channel_names or c.name in settings.channel_names)
    ]
    db = dbmod.make_engine(settings.url)
    if settings.create_schema:
        dbmod.create_schema(db)
    pipeline = load_pipeline(settings, channels)
    workers = [Worker(db, pipeline, clock=clock) for _ in range(max(1, settings.workers))]
    engine = Engine(db, clock=clock, processor=workers[0])
    from interface.engine.outbound import (
        outbound_workers,  # one per MLLP/file destination and application-ACK address
    )

    outbound = outbound_workers(db, pipeline, channels, clock=clock)
    try:
        from interface.mapping.validation import structure_validator

        engine.validator = structure_validator
    except ImportError:  # pragma: no cover
        pass
    writer = GroupCommitWriter(engine, reactor.callFromThread)
    runtime = Runtime(clock)
    engine.controls = pipeline_controls = runtime.controls  # pauses (interface.ops.channel_sync)
    for w in [*workers, *outbound]:
        w.controls = pipeline_controls
    pipeline.stats = runtime.stats
    from interface.engine.connection_acks import ConnectionAckRelay  # ack.same_connection

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
        from interface.store import journal

        def write():
            with db.begin() as conn:
                journal.record_event(conn, at=clock(), **kw)

        threads.deferToThread(write).addErrback(
            lambda f: log.error("event not recorded: %s", f.getErrorMessage())
        )

    def wake_all() -> None:  # something was paused or resumed
        for w in [*workers, *outbound]:
            w.wake.set()

    sync = ChannelSync(db, runtime, clock=clock, on_change=wake_all)
    top = service.MultiService()
    top.addService(_ThreadService("channel sync", sync.start, sync.stop))
    top.addService(_ThreadService("writer", writer.start, writer.stop))
    for w in workers:
        top.addService(_ThreadService("worker", w.start, w.stop))
    for w in outbound:
        top.addService(_ThreadService(f"outbound {w.lane}", w.start, w.stop))
    top.addService(_ThreadService("connection acks", relay.start, relay.stop))
    runtime.scan = scan = make_scan_worker(settings, db, pipeline, clock)
    top.addService(_ThreadService("scan", scan.start, scan.stop))
    listeners = {}  # endpoint key (interface.config.routing) -> listening service
    for key, group in endpoint_groups(channels, settings.port_overrides).items():
        listeners[key] = make_listener(settings, reactor, group, writer, runtime, record_event, relay)
        top.addService(listeners[key])
    parts = dict(
        db=db,
        engine=engine,
        writer=writer,
        workers=workers,
        runtime=runtime,
        channels=channels,
        pipeline=pipeline,
        outbound=outbound,
        listeners=listeners,
        relay=relay,
        scan=scan,
        record_event=record_event,
        clock=clock,
        top=top,
        sync=sync,
    )
    from interface.ops.reload import load_alerts_config

    alerts = load_alerts_config(settings, channels)  # the same check and notifiers as a reload's
    if alerts is not None:
        start_alerts(settings, parts, *alerts)
    from interface.config.mail import FILE_NAME as MAIL_FILE
    from interface.config.mail import load_optional as load_mail
    from interface.ops.roi_outbox import OutboxSender

    mail = load_mail(Path(settings.channels_dir).parent / MAIL_FILE)  # e-mail to ROI recipients
    if mail is not None:
        outbox = OutboxSender(db, mail, clock=clock)
        top.addService(_ThreadService("roi outbox", outbox.start, outbox.stop))
    if settings.web_port is not None:
        try:
            from interface.web.app import WebThread, create_app
        except ImportError:  # pragma: no cover - web console not built yet
            create_app = None
        if create_app is not None:
            from interface.desk.directory import from_file

            app = create_app(
                db,
                channels=channels,
                runtime=runtime,
                document_settings=pipeline.document_settings,
                directory=from_file(Path(settings.channels_dir).parent / "directory.yaml"),  # sign-in
                code_tables_file=Path(settings.channels_dir).parent / "rules" / "code_tables.yaml",
                mail=mail,
            )
            web = WebThread(app, settings.web_host, settings.web_port, tls=settings.web_tls)
            top.addService(_ThreadService("web", web.start, web.stop))
            parts["web"] = web
            parts["app"] = app
    return top, parts


def run(settings: Settings) -> int:
    """``interface run``: start everything and serve until SIGINT/SIGTERM; SIGHUP reloads the
    configuration (:mod:`interface.ops.reload`)."""
    from interface.engine.tls_stack import install_reactor

    install_reactor()  # no-op if the reactor is imported already (cli, cluster.child_main)
    from twisted.internet import reactor

    from interface.engine.logsetup import configure as configure_logging
    from interface.ops.reload import Reloader, install_sighup, pid_file

    configure_logging()  # INFO to stderr, SQL parameters and quoted values redacted (logsetup)
    top, parts = make_service(settings, reactor)
    top.startService()
    reloader = Reloader(settings, parts, reactor)
    install_sighup(reactor, reloader)
    if "app" in parts:  # the channels page's reload button (interface.web.api.channel_actions)
        parts["app"].state.reload = lambda: console_reload(settings, reactor, reloader)
    if settings.ready_file is not None:
        _write_ready_file(settings.ready_file, parts)
    pid = pid_file(settings.pid_file)
    for ch in parts["channels"]:
        log.info("channel=%s endpoint=%s", ch.name, settings.port_overrides.get(ch.name, ch.listen))
    if "web" in parts:
        log.info(
            "web console and API on %s://%s:%s/",
            "https" if settings.web_tls else "http",
            settings.web_host,
            settings.web_port,
        )
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    with pid:
        reactor.run()
    return 0


def console_reload(settings: Settings, reactor, reloader) -> str:
    """A reload asked for from the console: under ``--workers N`` the supervisor's (SIGHUP to
    it: it checks and rolls or forwards), else this process's own."""
    import os
    import signal

    if settings.inherited_fds:  # a cluster child: the supervisor owns the sockets and the reload
        os.kill(os.getppid(), signal.SIGHUP)
        return "reload requested from the supervisor; its outcome is the next event"
    reactor.callFromThread(reloader.reload)
    return "reload requested; its outcome is the next event (config_reloaded or config_rejected)"


def ready_event() -> threading.Event:  # pragma: no cover - helper for embedding
    return threading.Event()
