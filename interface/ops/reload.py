"""Configuration reload without dropping connections: SIGHUP or ``interface reload``.

What a reload does, in the reactor thread (:class:`Reloader`):

1. Re-read channels, mappings, rules and ``alerts.yaml`` (in a thread: compiling mappings takes a moment). Any
   problem (``file:line: message``, as ``interface check`` prints them; never message content)
   rejects the whole reload: the problems are logged, the event ``config_rejected`` is recorded
   and the engine keeps running on the old configuration.
2. Compare every channel definition with the running one (:func:`diff_channels`):

   * **unchanged**: its listener, its factory and its open connections are not touched;
   * **changed**: the old port stops listening, then each of its connections is closed as soon as
     the message it has in flight (and any frame already read) has been answered — the sender
     reconnects and gets the new definition; the channel listens again with the new definition;
   * **removed** (or ``enabled: false``): stops listening and its connections close the same
     way. Its queued items still finish with its last definition until the next restart;
   * **added**: starts listening.

3. The new :class:`~interface.engine.processing.Pipeline` (mappings, rules, channel definitions) is
   swapped into every worker by one attribute assignment; a worker reads it once per round,
   so an item in flight finishes with the old pipeline and the next one uses the new. New
   outbound destinations get their delivery lane; lanes of removed destinations stay until the
   restart (so their backlog drains).
   The alert checks (``interface.ops.alerts``) take the new ``alerts.yaml`` from their next check
   (:meth:`~interface.ops.alerts.Evaluator.reconfigure`): an alert of a rule kept under the same
   name stays firing; a file that appeared starts the checks, one that was removed leaves them
   with no rules.
4. The ``--ready-file`` is rewritten with the ports now bound, the event ``config_reloaded`` is
   recorded with the channel names that changed, and ``<var>/reload-status.json`` tells
   ``interface reload`` how it went.

If a changed channel's new endpoint cannot be bound (port in use), the old definition is put
back on its old endpoint and the channel is reported as ``failed`` in the event.

Under ``interface run --workers N`` the listening sockets belong to the supervisor
(:meth:`interface.ops.cluster.Supervisor.reload`). It re-reads and checks the configuration itself
first (same rejection as in step 1, status file included). When no channel was added or removed
and no ``listen:`` endpoint changed, it forwards SIGHUP and every child reloads in place as above
(each child writes the status; child 0 alone records the event, so one reload is one event). Otherwise it binds the new sockets and
replaces the children one at a time (a rolling restart); it then writes the status and records
``config_reloaded`` once. :func:`cluster_problems` remains a child's guard: a child never binds
or drops a socket itself, so it rejects such a change if the files moved on between the
supervisor's check and its own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from interface.hl7.errors import ConfigError

log = logging.getLogger("interface.ops.reload")

STATUS_FILE = "reload-status.json"


# -- the pure part ----------------------------------------------------------------------------


@dataclass
class ChannelDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{k}: {', '.join(v)}"
            for k, v in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if v
        ]
        return "; ".join(parts) if parts else "channels unchanged"


def diff_channels(old, new) -> ChannelDiff:
    """Which channels (by name) were added, removed, changed or kept, comparing whole definitions."""
    o = {c.name: c for c in old}
    n = {c.name: c for c in new}
    d = ChannelDiff()
    for name in sorted(set(o) | set(n)):
        if name not in n:
            d.removed.append(name)
        elif name not in o:
            d.added.append(name)
        elif o[name].model_dump() != n[name].model_dump():
            d.changed.append(name)
        else:
            d.unchanged.append(name)
    return d


def listener_changes(diff: ChannelDiff, old: dict, new: dict, overrides: dict | None = None):
    """The listeners (endpoint keys, :mod:`interface.config.routing`) before and after, and those to
    restart: a listener whose set of channels changed, or one of whose channels changed, is
    stopped (its connections drained) and started again with the new definitions; the others
    keep their connections. Channels sharing an endpoint restart together."""
    from interface.config.routing import endpoint_groups

    old_groups = endpoint_groups(list(old.values()), overrides)
    new_groups = endpoint_groups(list(new.values()), overrides)
    touched = set(diff.added) | set(diff.removed) | set(diff.changed)
    restart = []
    for key in list(old_groups) + [k for k in new_groups if k not in old_groups]:
        before = [c.name for c in old_groups.get(key, [])]
        after = [c.name for c in new_groups.get(key, [])]
        if before != after or touched & set(after):
            restart.append(key)
    return old_groups, new_groups, restart


def load_config(settings):
    """The enabled channels and a new Pipeline from ``settings``; ConfigError lists every problem
    as ``file:line: message`` (channel files, cross-file clashes, unknown mappings, mappings, rules)."""
    from interface.config.channels import _yaml_files, cross_check, load_channel
    from interface.ops.runtime import load_pipeline

    problems: list[str] = []
    loaded = []
    for f in _yaml_files(settings.channels_dir):
        try:
            loaded.append(load_channel(f))
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(cross_check(loaded))
    pipeline = None
    channels = [
        ch
        for ch, _ in loaded
        if ch.enabled and (not settings.channel_names or ch.name in settings.channel_names)
    ]
    try:
        pipeline = load_pipeline(settings, channels)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if pipeline is not None:
        for ch, doc in loaded:
            if ch not in channels:
                continue
            for i, d in enumerate(ch.destinations):
                if d.type == "store" and d.mapping not in pipeline.mappings:
                    where = (
                        doc.where(("mapping",))
                        if ch.mapping == d.mapping
                        else doc.where(("destinations", i, "mapping"))
                    )
                    problems.append(f"{where}: unknown mapping {d.mapping!r}")
    if problems:
        raise ConfigError(problems)
    return channels, pipeline


def load_alerts_config(settings, channels):
    """``alerts.yaml`` checked against these channels, with its notifiers built: ``(cfg,
    dispatcher)``, or None when there is no file. ConfigError: ``file:line: message``, or an
    e-mail notifier's credential variable that is not set."""
    path = getattr(settings, "alerts_file", None)
    if path is None or not Path(path).exists():
        return None
    from interface.ops.alert_rules import build_dispatcher, load_alerts

    cfg = load_alerts(path, {c.name for c in channels})
    return cfg, build_dispatcher(cfg)


def load_all(settings):
    """:func:`load_config`, then :func:`load_alerts_config` against the channels it loaded (so
    ``alerts.yaml`` is checked once the channels load: its problems come in a ConfigError of
    their own)."""
    channels, pipeline = load_config(settings)
    return channels, pipeline, load_alerts_config(settings, channels)


def cluster_problems(settings, diff: ChannelDiff, old: dict, new: dict) -> list[str]:
    """A child of ``run --workers N`` adopts the supervisor's sockets and cannot add, remove or
    move one itself (the supervisor does that with a rolling restart, see the module docstring);
    it gets here only if the files changed again after the supervisor checked them."""
    if not settings.inherited_fds:
        return []
    again = "the files changed during the reload: run `interface reload` again"
    out = []
    for name in diff.added:
        out.append(f"channel {name} is new to this worker: {again}")
    for name in diff.removed:
        out.append(f"channel {name} was removed under this worker: {again}")
    for name in diff.changed:
        if old[name].listen != new[name].listen or name not in settings.inherited_fds:
            out.append(f"channel {name}: listen changed under this worker: {again}")
    return out


# -- the running engine -----------------------------------------------------------------------


class ReloadReport:
    """How a reload ended, for ``interface reload`` (``<var>/reload-status.json``) and the log:
    shared by this process's :class:`Reloader` and the ``--workers`` supervisor
    (:class:`interface.ops.cluster.Supervisor`), whichever answers. Needs ``settings.var_dir``, a
    ``count`` attribute and ``_event(kind, detail)``."""

    def _reject(self, problems: list[str]) -> dict:
        log.error("configuration rejected, still running the previous one (%d problem(s))", len(problems))
        for p in problems:
            log.error("  %s", p)
        self._event("config_rejected", "\n".join(problems))
        return self._status(False, f"{len(problems)} problem(s)", problems)

    def _status(self, ok: bool, summary: str, problems: list[str]) -> dict:
        self.count += 1
        doc = {"pid": os.getpid(), "count": self.count, "ok": ok, "summary": summary, "problems": problems}
        try:
            write_json(Path(self.settings.var_dir) / STATUS_FILE, doc)
        except OSError as exc:
            log.warning("cannot write %s: %s", STATUS_FILE, exc)
        return doc


class Reloader(ReloadReport):
    """Applies a new configuration to the parts built by ``service.make_service``; see the module
    docstring. Call :meth:`reload` in the reactor thread; overlapping calls run one after another."""

    def __init__(self, settings, parts: dict, reactor):
        self.settings = settings
        self.parts = parts
        self.reactor = reactor
        self.count = 0
        self._running = False
        self._again = False

    def reload(self):
        from twisted.internet import defer, threads

        if self._running:
            self._again = True
            return defer.succeed(None)
        self._running = True
        log.info("reloading configuration")
        d = threads.deferToThread(load_all, self.settings)
        d.addCallbacks(self._loaded, self._load_failed)
        d.addErrback(self._unexpected)
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self._running = False
        if self._again:
            self._again = False
            self.reactor.callLater(0, self.reload)
        return result

    def _load_failed(self, failure):
        failure.trap(ConfigError)
        return self._reject(list(failure.value.problems))

    def _unexpected(self, failure):
        log.error("reload failed: %s", failure.getTraceback())
        self._event("config_rejected", f"reload failed: {failure.type.__name__}")
        return self._status(False, f"reload failed: {failure.type.__name__}", [])

    def _loaded(self, loaded):
        from twisted.internet import defer

        channels, pipeline, alerts = loaded
        parts = self.parts
        old = {c.name: c for c in parts["channels"]}
        new = {c.name: c for c in channels}
        diff = diff_channels(old.values(), new.values())
        problems = cluster_problems(self.settings, diff, old, new)
        if problems:
            return self._reject(problems)
        for name in diff.removed:  # their queued items finish with their last definition
            pipeline.channels.setdefault(name, old[name])
        self._swap_pipeline(pipeline, channels)
        self._swap_alerts(alerts)
        top, listeners, runtime = parts["top"], parts["listeners"], parts["runtime"]
        old_groups, new_groups, restart = listener_changes(diff, old, new, self.settings.port_overrides)
        stopping = []
        for key in restart:
            if key not in old_groups:
                continue
            svc = listeners.pop(key)
            stopping.append(defer.maybeDeferred(top.removeService, svc))  # stopListening
            svc.mllp_factory.drain()  # close connections once their ACK is out
            for c in old_groups[key]:
                if c.name not in new:
                    runtime.factories.pop(c.name, None)
                    runtime.ports.pop(c.name, None)
        d = defer.gatherResults(stopping, consumeErrors=True)  # old ports closed before rebinding
        d.addCallback(lambda _: self._start(diff, old, new, old_groups, new_groups, restart))
        return d

    def _swap_pipeline(self, pipeline, channels) -> None:
        from interface.engine.outbound import OutboundWorker, outbound_lanes
        from interface.ops.runtime import _ThreadService

        parts = self.parts
        pipeline.stats = parts["pipeline"].stats  # the trends recorder outlives a reload
        parts["pipeline"] = pipeline
        for w in parts["workers"] + parts["outbound"] + ([parts["relay"]] if parts.get("relay") else []):
            w.pipeline = pipeline  # read once per round by each worker
        have = {w.lane for w in parts["outbound"]}
        for lane in outbound_lanes(channels):
            if lane not in have:
                w = OutboundWorker(parts["db"], pipeline, clock=parts["clock"], lane=lane)
                w.controls = parts["runtime"].controls
                parts["outbound"].append(w)  # the same list the writer wakes
                parts["top"].addService(_ThreadService(f"outbound {lane}", w.start, w.stop))
        parts["channels"][:] = channels
        app = parts.get("app")
        if app is not None:
            app.state.channels = list(channels)
            app.state.document_settings = pipeline.document_settings

    def _swap_alerts(self, alerts) -> None:
        from interface.ops.alert_rules import AlertConfig
        from interface.ops.alerts import Dispatcher
        from interface.ops.runtime import start_alerts

        ev = self.parts["runtime"].alerts
        if ev is not None:
            ev.reconfigure(*(alerts or (AlertConfig(interval_seconds=ev.cfg.interval_seconds), Dispatcher())))
        elif alerts is not None:
            start_alerts(self.settings, self.parts, *alerts)

    def _start(
        self, diff: ChannelDiff, old: dict, new: dict, old_groups: dict, new_groups: dict, restart: list[str]
    ) -> dict:
        from interface.ops.runtime import _write_ready_file

        parts = self.parts
        failed: list[str] = []
        for key in restart:
            if key in new_groups and not self._listen(key, new_groups[key]):
                failed.extend(c.name for c in new_groups[key])
        if failed:  # put the old definitions back where they were, for processing too
            listening = {c.name for k, g in new_groups.items() if k in parts["listeners"] for c in g}
            for key, group in old_groups.items():
                back = [c for c in group if c.name in failed or c.name not in listening]
                if key in parts["listeners"] or not any(c.name in failed for c in back):
                    continue
                self._listen(key, back)
                for c in back:
                    parts["pipeline"].channels[c.name] = c
                by_name = {c.name: c for c in back}
                parts["channels"][:] = [by_name.get(c.name, c) for c in parts["channels"]]
        if self.settings.ready_file is not None:
            _write_ready_file(self.settings.ready_file, parts)
        summary = diff.summary() + (f"; failed: {', '.join(failed)}" if failed else "")
        log.info("configuration reloaded: %s", summary)
        self._event("config_reloaded", summary)
        return self._status(not failed, summary, [])

    def _listen(self, key: str, group: list) -> bool:
        from interface.ops.runtime import make_listener

        parts = self.parts
        svc = make_listener(
            self.settings,
            self.reactor,
            group,
            parts["writer"],
            parts["runtime"],
            parts["record_event"],
            parts.get("relay"),
        )
        try:
            parts["top"].addService(svc)
        except Exception as exc:
            if svc in parts["top"].services:
                parts["top"].services.remove(svc)
            for c in group:
                parts["runtime"].factories.pop(c.name, None)
                parts["runtime"].ports.pop(c.name, None)
            log.error("channel=%s cannot listen: %s", ",".join(c.name for c in group), exc)
            return False
        parts["listeners"][key] = svc
        return True

    def _event(self, kind: str, detail: str) -> None:
        if getattr(self.settings, "reload_events", True):
            self.parts["record_event"](kind=kind, detail=detail)


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def install_sighup(reactor, reloader: Reloader) -> None:
    """SIGHUP -> a reload in the reactor thread (the handler itself does nothing else)."""
    if not hasattr(signal, "SIGHUP"):  # pragma: no cover - Windows
        return
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reloader.reload))


@contextmanager
def pid_file(path: Path | None):
    """Write our pid to ``path`` while running; remove it on the way out if it is still ours."""
    if path is None:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = str(os.getpid())
    tmp = path.with_name(path.name + f".{me}.tmp")
    tmp.write_text(me + "\n")
    os.replace(tmp, path)
    try:
        yield
    finally:
        try:
            if path.read_text().strip() == me:
                path.unlink()
        except OSError:
            pass


# -- `interface reload` -----------------------------------------------------------------------


def _read_status(path: Path):
    try:
        doc = json.loads(path.read_text())
        return doc, (doc.get("pid"), doc.get("count"))
    except (OSError, ValueError):
        return None, None


def send_reload(
    var_dir: Path, pid: int | None = None, *, wait: bool = True, timeout: float = 30.0, out=None, err=None
) -> int:
    """Signal the running engine (``pid`` or ``<var>/interface.pid``) and, with ``wait``, print
    what the reload did. Exit status 0: reloaded; 1: rejected, not running, or no answer."""
    import sys

    out, err = out or sys.stdout, err or sys.stderr
    var_dir = Path(var_dir)
    if pid is None:
        pf = var_dir / "interface.pid"
        try:
            pid = int(pf.read_text().strip())
        except (OSError, ValueError):
            print(
                f"no engine pid in {pf}: is `interface run --var {var_dir}` running? (or give --pid)",
                file=err,
            )
            return 1
    status_path = var_dir / STATUS_FILE
    _, before = _read_status(status_path)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"no process {pid} (stale pid file?)", file=err)
        return 1
    except PermissionError:
        print(f"not allowed to signal process {pid}", file=err)
        return 1
    if not wait:
        print(f"reload requested (SIGHUP to pid {pid})", file=out)
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc, now = _read_status(status_path)
        if doc is not None and now != before:
            if doc.get("ok"):
                print(f"reloaded: {doc.get('summary')}", file=out)
                return 0
            if not doc.get("problems"):  # applied, but a channel could not move (see the log)
                print(f"reloaded with failures: {doc.get('summary')}", file=err)
                return 1
            print(f"rejected, still running the previous configuration: {doc.get('summary')}", file=err)
            for p in doc.get("problems") or []:
                print(p, file=err)
            return 1
        time.sleep(0.1)
    print(f"SIGHUP sent to pid {pid}, no answer in {timeout:.0f}s (see the engine's log)", file=err)
    return 1
