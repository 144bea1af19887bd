"""Several engine processes: ``interface run --workers N`` on one machine, any number of machines
on one PostgreSQL.

Sharing the work needs no home-made cluster: every process runs listeners and workers against
the same database, and the database arbitrates (``interface.store.workqueue``): a work item is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` plus a transaction-scoped advisory lock on each of its
ordering keys (``pg_try_advisory_xact_lock``; both keys of a merge) inside the transaction that
applies it. Claims are transactional, so a process that dies (SIGKILL, power loss) releases them
when its connection closes — there is no lease to expire and no claim to clean up.

On one machine, :func:`supervise` is the parent of N engine processes. It binds every channel's
listening socket once and hands the file descriptors to the children, which adopt them
(``reactor.adoptStreamPort``): the kernel hands each new connection to one of them, and
connections waiting in the backlog survive a child's death because the parent keeps the socket
open. New connections are spread evenly over the children (:func:`share_accepts`). The parent
checks the configuration and creates or checks the schema once — in a short-lived process
(``interface.ops.config_check``), so that the parent itself never imports the engine (it stays
~26 MB) — restarts a child that dies (with backoff
when it dies young), and on SIGTERM/SIGINT stops every child (SIGTERM, then SIGKILL after a
grace period). The web console and the alert checks run in child 0 only.

SIGHUP (``interface reload``) is handled by the supervisor's main loop (:meth:`Supervisor.reload`):
it re-reads and checks channels (same filters as at start), mappings, rules and alerts; any
problem rejects the whole reload (``config_rejected``, ``reload-status.json``) and nothing changes.
If no channel was added or removed and no endpoint changed, every child gets SIGHUP and reloads
in place (``interface.ops.reload``). Otherwise the supervisor binds the new sockets first (one that
cannot be bound rejects the reload, the others just bound are closed), then replaces the children
one at a time: a new child with every current socket, ready (its ready file) within
``ready_timeout``, then SIGTERM to the old one, which finishes what is in flight as at shutdown.
The sockets of removed or moved channels are closed once no child that adopted them lives; a
connection waiting in a kept socket's backlog is taken by a new child. With a fixed web port, child
0 is replaced last and its old process is stopped before the new one starts (they cannot both
hold the port; the other children serve meanwhile). A new child that does not get ready is stopped,
the old one kept and the rolling restart ends there, reported as failed; the next reload replaces
every child still on the old sockets. A child dying meanwhile is restarted on the new sockets.

On SQLite, ``--workers N`` works but only parallelises parsing and mapping: every write
transaction takes the single SQLite write lock (``BEGIN IMMEDIATE``, queued by
``db.WriteLock``), which also keeps each key in one process at a time. Use PostgreSQL to scale
writes across machines.

Test hook: with ``INTERFACE_CLAIM_TRACE=/path`` every claim and its release (just before the
commit or rollback that ends it) is appended to that file, so a test can prove that no key was
ever held by two processes at once. Nothing is written when it is unset.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from interface.config.routing import endpoint_key
from interface.ops.endpoints import bind_endpoint
from interface.ops.reload import ReloadReport

log = logging.getLogger("interface.ops.cluster")


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ready_file: Path | None = None
    ready: bool = False
    failures: int = 0  # consecutive early deaths
    restart_at: float | None = None
    generation: int = 0  # the listening-socket set it was started with (bumped by a rolling reload)


@dataclass
class Supervisor(ReloadReport):
    """Runs N engine processes on shared sockets; see the module docstring."""

    settings: object  # service.Settings
    processes: int
    restart_delay: float = 1.0
    max_restart_delay: float = 30.0
    grace: float = 20.0
    stable_after: float = 10.0  # a child that lived this long resets its backoff
    ready_timeout: float = 60.0  # a rolling reload waits this long for each new child
    sockets: dict = field(default_factory=dict)  # channel -> socket
    children: list = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    reload_event: threading.Event = field(default_factory=threading.Event)  # set by SIGHUP
    channels: list = field(default_factory=list)  # the definitions the sockets were bound for
    endpoints: dict = field(default_factory=dict)  # channel -> endpoint its socket is bound on
    generation: int = 0
    retired: list = field(default_factory=list)  # (generation, [socket]): close once no child <= it lives
    count: int = 0  # reload-status.json's count when the supervisor answers (ReloadReport)
    _spawned: int = 0
    _extra: list = field(default_factory=list)  # children being started or stopped by a reload

    def prepare(self) -> None:
        """Check the config, create or check the schema (in a short-lived process:
        ``interface.ops.config_check``), bind the listeners (in the parent)."""
        from interface.ops.config_check import run_check

        s = self.settings
        channels = run_check("start", s)  # ConfigError: mapping, rule or alert problems stop here
        self.channels = channels
        self.endpoints = {ch.name: s.port_overrides.get(ch.name, ch.listen) for ch in channels}
        shared: dict[str, socket.socket] = {}  # channels on one endpoint share its socket
        for ch in channels:
            key = endpoint_key(ch, self.endpoints[ch.name])
            if key not in shared:
                shared[key] = bind_endpoint(self.endpoints[ch.name])
            self.sockets[ch.name] = shared[key]
        self._tmp = Path(tempfile.mkdtemp(prefix="interface-workers-"))

    def _spec(self, index: int, ready_file: Path) -> dict:
        s = self.settings
        return {
            "channels_dir": str(s.channels_dir),
            "mappings_dir": str(s.mappings_dir),
            "rules_file": str(s.rules_file) if s.rules_file else None,
            "var_dir": str(s.var_dir),
            "db_url": s.db_url,
            "web_host": s.web_host,
            "web_port": s.web_port if index == 0 else None,
            "web_tls": list(s.web_tls) if getattr(s, "web_tls", None) else None,
            "channel_names": list(s.channel_names),
            "ready_file": str(ready_file),
            "alerts_file": str(s.alerts_file) if index == 0 and getattr(s, "alerts_file", None) else None,
            "reload_events": index == 0,
            "content_dir": str(s.content_dir) if getattr(s, "content_dir", None) else None,
            "checked_mappings": list(getattr(s, "checked_mappings", None) or ()),
            "inherited_fds": {name: [sock.fileno(), sock.family] for name, sock in self.sockets.items()},
            "parent": os.getpid(),
        }

    def _spawn(self, child: _Child) -> None:
        self._spawned += 1
        child.ready_file = self._tmp / f"child-{child.index}-{self._spawned}.json"
        child.ready_file.unlink(missing_ok=True)
        child.ready = False
        child.generation = self.generation
        spec = self._spec(child.index, child.ready_file)
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "interface.ops.cluster", json.dumps(spec)],
            pass_fds=[s.fileno() for s in self.sockets.values()],
            process_group=0,
        )  # a terminal's Ctrl-C reaches the parent only
        child.started = time.monotonic()
        child.restart_at = None
        log.info("worker %d started (pid %d)", child.index, child.proc.pid)

    def _write_ready(self) -> None:
        path = self.settings.ready_file
        if path is None or not all(c.ready for c in self.children):
            return
        web_port = None
        try:
            web_port = json.loads(self.children[0].ready_file.read_text()).get("web_port")
        except (OSError, ValueError):
            pass
        doc = {
            "pid": os.getpid(),
            "ports": {n: s.getsockname()[1] for n, s in self.sockets.items()},
            "web_port": web_port,
            "workers": [c.proc.pid for c in self.children],
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def step(self) -> None:
        """One supervision round: notice ready children, reap dead ones, restart when due."""
        now = time.monotonic()
        changed = False
        for c in self.children:
            if c.proc is None:
                if c.restart_at is not None and now >= c.restart_at:
                    self._spawn(c)
                continue
            code = c.proc.poll()
            if code is None:
                if not c.ready and c.ready_file.exists():
                    c.ready = True
                    changed = True
                continue
            lived = now - c.started
            c.failures = 0 if lived >= self.stable_after else c.failures + 1
            delay = min(self.max_restart_delay, self.restart_delay * (2 ** max(c.failures - 1, 0)))
            log.warning(
                "worker %d (pid %d) exited with %s after %.1fs; restarting in %.1fs",
                c.index,
                c.proc.pid,
                code,
                lived,
                delay,
            )
            c.proc, c.ready, c.restart_at = None, False, now + delay
        if changed:
            self._write_ready()
        if self.retired:
            self._close_retired()

    def run(self) -> int:
        self.prepare()
        self.children = [_Child(i) for i in range(self.processes)]
        for c in self.children:
            self._spawn(c)
        try:
            while not self.stop_event.is_set():
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload()
                self.step()
                self.stop_event.wait(0.1)
        finally:
            self.shutdown()
        return 0

    # -- configuration reload (SIGHUP) --------------------------------------------------------

    def reload(self) -> dict | None:
        """Re-read the configuration; forward SIGHUP when the sockets stay as they are, else bind
        the new ones and replace the children one at a time (see docs/operations.md). Returns
        the status written to ``reload-status.json``, or None when the children answer."""
        from interface.hl7.errors import ConfigError
        from interface.ops.reload import diff_channels

        log.info("SIGHUP: reloading the configuration")
        try:
            channels, endpoints = self._load()
        except ConfigError as exc:
            return self._reject(list(exc.problems))
        except Exception as exc:  # noqa: BLE001 - keep serving whatever went wrong
            log.exception("reload failed")
            return self._reject([f"reload failed: {type(exc).__name__}"])
        old = {c.name: c for c in self.channels}
        new = {c.name: c for c in channels}
        diff = diff_channels(self.channels, channels)
        moved = [
            n for n in diff.changed if endpoints[n] != self.endpoints.get(n) or old[n].listen != new[n].listen
        ]
        stale = [c.index for c in self.children if c.generation != self.generation]
        if not (diff.added or diff.removed or moved or stale):
            log.info("asking every worker to reload its configuration (%s)", diff.summary())
            self.channels = channels
            for c in self.children:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGHUP)
            return None  # each child reloads in place and writes the status itself
        bound: dict[str, socket.socket] = {}
        kept = {
            endpoint_key(c, self.endpoints[c.name]): self.sockets[c.name]
            for c in self.channels
            if c.name in self.sockets and c.name in new and endpoints[c.name] == self.endpoints[c.name]
        }
        by_key: dict[str, socket.socket] = {}  # a channel joining a kept or new shared endpoint
        for ch in channels:
            ep = endpoints[ch.name]
            key = endpoint_key(ch, ep)
            if ch.name in self.sockets and self.endpoints.get(ch.name) == ep and key in kept:
                continue
            if key in kept or key in by_key:
                bound[ch.name] = kept.get(key) or by_key[key]
                continue
            try:
                bound[ch.name] = by_key[key] = bind_endpoint(ep)
            except (OSError, ConfigError) as exc:
                for sock in by_key.values():
                    sock.close()
                why = "; ".join(exc.problems) if isinstance(exc, ConfigError) else (exc.strerror or str(exc))
                return self._reject([f"channel {ch.name}: cannot listen on {ep}: {why}"])
        previous = self.sockets
        self.sockets = {ch.name: bound.get(ch.name) or previous[ch.name] for ch in channels}
        current = {id(sock) for sock in self.sockets.values()}
        self.retired.append(
            (self.generation, [sock for sock in previous.values() if id(sock) not in current])
        )
        self.generation += 1
        self.channels, self.endpoints = channels, endpoints
        log.info("rolling restart of %d worker(s): %s", len(self.children), diff.summary())
        failure = self._roll()
        self._close_retired()
        self._write_ready()
        summary = diff.summary() + (f"; failed: {failure}" if failure else "")
        if failure:
            log.error("configuration reload incomplete: %s", summary)
        else:
            log.info("configuration reloaded: %s", summary)
        self._event("config_reloaded", summary)
        return self._status(not failure, summary, [])

    def _load(self):
        """The channels (same filters as at start), checked with mappings, rules and alerts, and
        each one's endpoint (``--listen`` overrides win). ConfigError: ``file:line: message``."""
        from interface.ops.config_check import run_check

        s = self.settings
        channels = run_check("reload", s)  # in a short-lived process, as at start
        return channels, {c.name: s.port_overrides.get(c.name, c.listen) for c in channels}

    def _roll(self) -> str | None:
        """Replace every child, one at a time: start the new one, wait until it is ready, then
        stop the old one (SIGTERM: it finishes what is in flight). A fixed web port is held by
        child 0, so that one goes last and its old process stops first. Returns what failed."""
        web_fixed = bool(getattr(self.settings, "web_port", None))
        order = list(range(len(self.children)))
        if web_fixed:
            order = order[1:] + order[:1]
        for i in order:
            if self.stop_event.is_set():
                return "stopped before every worker was replaced"
            old = self.children[i]
            if old.generation == self.generation and old.proc is not None:
                continue  # died meanwhile and was restarted with the new sockets already
            if old.proc is None:
                old.restart_at = None  # dead: its replacement is started here
            new = _Child(i)
            if web_fixed and i == 0:  # the old one must let go of the web port first
                self.children[i] = new
                self._stop(old)
                self._spawn(new)
                proc = new.proc
                if not self._wait_ready(new):
                    if new.proc is proc and proc.poll() is None:  # hung: the normal restart logic retries
                        self._stop(new)
                        new.restart_at = time.monotonic() + self.restart_delay
                    return f"worker {i} did not become ready in {self.ready_timeout:.0f}s"
                continue
            self._spawn(new)
            self._extra.append(new)
            ready = self._wait_ready(new)
            self._extra.remove(new)
            if not ready:
                self._stop(new)
                if self.stop_event.is_set():
                    return "stopped before every worker was replaced"
                return f"worker {i} did not become ready in {self.ready_timeout:.0f}s (the old one keeps running)"
            self.children[i] = new
            self._stop(old)
        return None

    def _wait_ready(self, child: _Child) -> bool:
        proc, ready_file = child.proc, child.ready_file
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if ready_file.exists():
                child.ready = True
                return True
            if proc.poll() is not None:
                log.error(
                    "new worker %d (pid %d) exited with %s before it was ready",
                    child.index,
                    proc.pid,
                    proc.returncode,
                )
                return False
            self.step()  # the other children are still supervised
            self.stop_event.wait(0.05)
        return False

    def _stop(self, child: _Child) -> None:
        """SIGTERM one child that is no longer in ``children`` and wait for it (SIGKILL after
        the grace period); the others are supervised meanwhile."""
        proc = child.proc
        if proc is None:
            return
        self._extra.append(child)
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    log.warning("worker pid %d did not stop in %.0fs: killing it", proc.pid, self.grace)
                    proc.kill()
                    proc.wait()
                    break
                self.step()
                try:
                    proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
            log.info("worker %d (pid %d) stopped", child.index, proc.pid)
        finally:
            self._extra.remove(child)
            child.proc = None
            if child.ready_file is not None:
                child.ready_file.unlink(missing_ok=True)

    def _close_retired(self) -> None:
        """Close the sockets of removed or moved channels once no child that adopted them lives."""
        live = [c for c in self.children + self._extra if c.proc is not None and c.proc.poll() is None]
        keep = []
        for gen, socks in self.retired:
            if any(c.generation <= gen for c in live):
                keep.append((gen, socks))
                continue
            for sock in socks:
                sock.close()
        self.retired = keep

    def _event(self, kind: str, detail: str) -> None:
        from interface.ops.config_check import run_check

        try:
            run_check("event", self.settings, kind=kind, detail=detail)  # no SQLAlchemy in here
        except Exception as exc:  # noqa: BLE001 - the reload itself is done; say so in the log
            log.error("event %s not recorded: %s", kind, type(exc).__name__)

    def shutdown(self) -> None:
        live = [c.proc for c in self.children + self._extra if c.proc is not None and c.proc.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0fs: killing it", p.pid, self.grace)
                p.kill()
                p.wait()
        for s in self.sockets.values():
            s.close()
        self.sockets.clear()
        for _gen, socks in self.retired:
            for s in socks:
                s.close()
        self.retired.clear()
        log.info("all workers stopped")


def supervise(settings, processes: int, **kw) -> int:
    """``interface run --workers N``: run N engine processes until SIGTERM or SIGINT."""
    from interface.hl7.errors import ConfigError

    if processes < 0:
        raise ConfigError(
            [f"--workers {processes}: expected a number of processes, or 0 for one per CPU core"]
        )
    from interface.engine.logsetup import configure as configure_logging

    configure_logging()  # INFO to stderr, SQL parameters and quoted values redacted (logsetup)
    sup = Supervisor(settings, processes or (os.cpu_count() or 1), **kw)

    def on_signal(signum, _frame):
        log.info("signal %d: stopping all workers", signum)
        sup.stop_event.set()

    def on_hup(signum, _frame):  # config reload, done by the main loop (Supervisor.reload)
        sup.reload_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    from interface.ops.reload import pid_file

    with pid_file(getattr(settings, "pid_file", None)):
        return sup.run()


# -- a child --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: get SIGTERM if the supervisor dies, so no orphan keeps serving."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def child_main(spec: dict) -> int:
    from interface.engine.tls_stack import install_reactor

    install_reactor()  # before anything imports it: Twisted's TLS only if a channel uses TLS
    from interface.ops.service import run
    from interface.ops.settings import Settings

    _die_with_parent()
    if os.getppid() != spec["parent"]:
        return 1  # the supervisor died before we could ask to follow it
    settings = Settings(
        channels_dir=Path(spec["channels_dir"]),
        mappings_dir=Path(spec["mappings_dir"]),
        rules_file=Path(spec["rules_file"]) if spec["rules_file"] else None,
        var_dir=Path(spec["var_dir"]),
        db_url=spec["db_url"],
        web_host=spec["web_host"],
        web_port=spec["web_port"],
        workers=1,
        channel_names=spec["channel_names"],
        web_tls=tuple(spec["web_tls"]) if spec.get("web_tls") else None,
        create_schema=False,
        ready_file=Path(spec["ready_file"]),
        inherited_fds={name: tuple(v) for name, v in spec["inherited_fds"].items()},
        alerts_file=Path(spec["alerts_file"]) if spec.get("alerts_file") else None,
        reload_events=spec.get("reload_events", True),
        content_dir=Path(spec["content_dir"]) if spec.get("content_dir") else None,
        checked_mappings=list(spec.get("checked_mappings") or ()),
    )
    return run(settings)


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
