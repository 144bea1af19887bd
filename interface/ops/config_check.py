"""The ``--workers`` supervisor's heavy steps, each in a short-lived process of its own.

The supervisor (``interface.ops.cluster``) binds sockets and watches its children; checking the
configuration means loading every channel, mapping, rule and alert notifier — the whole engine,
~60 MB of imported code that a Python process never gives back. So it runs this instead:
``python -m interface.ops.config_check`` with one JSON request on stdin, one JSON answer on
stdout, and exits; the supervisor stays at the size of what it does (docs/benchmarks.md, #21
target 5).

Requests (``settings``: :func:`interface.ops.settings.to_spec`):

* ``{"action": "start", "settings": …}`` — what starting needs: the enabled channels (filtered by
  ``channel_names``), the pipeline built from them (mapping and rule errors stop the start here,
  not in a restart loop of children), ``alerts.yaml`` with its notifiers, and the schema created
  or checked when ``create_schema`` is set;
* ``{"action": "reload", "settings": …}`` — a SIGHUP: channels, mappings, rules and alerts checked
  together (``interface.ops.reload.load_all``);
* ``{"action": "event", "settings": …, "kind": …, "detail": …}`` — one row of the journal's
  events (``config_reloaded`` / ``config_rejected``).

Answer: ``{"ok": true, "channels": [{"name", "listen", "definition"}]}`` (``definition``: the
channel's ``model_dump``, which the supervisor compares to tell changed channels), or
``{"ok": false, "problems": [...]}`` for a ``ConfigError`` (a schema that needs ``interface db
upgrade`` included). Anything else is a traceback on stderr and exit status 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

from interface.hl7.errors import ConfigError
from interface.ops.settings import Settings, from_spec, to_spec


@dataclass(frozen=True)
class ChannelInfo:
    """What the supervisor knows of a channel: enough to bind it, share it and diff it."""

    name: str
    listen: str
    definition: dict = field(default_factory=dict, compare=False)

    def model_dump(self) -> dict:  # as ``interface.ops.reload.diff_channels`` compares channels
        return self.definition


class CheckFailed(RuntimeError):
    """The check process itself failed (its traceback went to stderr)."""


def run_check(action: str, settings: Settings, **extra) -> list[ChannelInfo]:
    """Run one request in a fresh process; the channels, or ConfigError with its problems. A
    start or reload check also sets ``settings.checked_mappings``: the mapping data it found sound, whose
    HL7 path check the children then skip (``interface.mapping.loader.load_mappings``)."""
    request = {"action": action, "settings": to_spec(settings), **extra}
    proc = subprocess.run(
        [sys.executable, "-m", "interface.ops.config_check"],
        input=json.dumps(request),
        stdout=subprocess.PIPE,  # stderr: the supervisor's own (its log, any traceback)
        text=True,
        check=False,
    )
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    except ValueError:
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        raise CheckFailed(f"the configuration check ({action}) failed with exit status {proc.returncode}")
    if not answer["ok"]:
        raise ConfigError(list(answer["problems"]))
    if action in ("start", "reload"):  # digests of data found sound: the new and the kept mappings
        settings.checked_mappings = list(answer.get("checked_mappings") or ())
    return [ChannelInfo(c["name"], c["listen"], c["definition"]) for c in answer.get("channels", ())]


def _start(s: Settings) -> list:
    from interface.config.channels import load_channels
    from interface.ops.reload import load_alerts_config
    from interface.ops.runtime import load_pipeline
    from interface.store import db as dbmod

    channels = [
        c
        for c in load_channels(s.channels_dir)
        if c.enabled and (not s.channel_names or c.name in s.channel_names)
    ]
    pipeline = load_pipeline(s, channels)
    s.checked_mappings = sorted(m.paths_digest for m in pipeline.mappings.values())  # for the children
    load_alerts_config(s, channels)  # so do alerts.yaml's, and its notifiers' (an e-mail notifier's
    # credential variable that is not set), which child 0 would refuse at start
    if s.create_schema:
        engine = dbmod.make_engine(s.url, pool_size=1)
        try:
            dbmod.create_schema(engine)
        finally:
            engine.dispose()
    return channels


def _reload(s: Settings) -> list:
    from interface.ops.reload import load_all

    channels, pipeline, _alerts = load_all(s)
    s.checked_mappings = sorted(m.paths_digest for m in pipeline.mappings.values())
    return channels


def _event(s: Settings, kind: str, detail: str) -> None:
    from datetime import datetime, timezone

    from interface.store import db as dbmod
    from interface.store import journal

    engine = dbmod.make_engine(s.url, pool_size=1)
    try:
        with engine.begin() as conn:
            journal.record_event(conn, at=datetime.now(timezone.utc), kind=kind, detail=detail)
    finally:
        engine.dispose()


def main() -> int:
    request = json.loads(sys.stdin.read())
    settings = from_spec(request["settings"])
    action = request["action"]
    try:
        if action == "event":
            _event(settings, request["kind"], request["detail"])
            channels = []
        else:
            channels = (_start if action == "start" else _reload)(settings)
    except ConfigError as exc:
        print(json.dumps({"ok": False, "problems": list(exc.problems)}))
        return 0
    out = [{"name": c.name, "listen": c.listen, "definition": c.model_dump(mode="json")} for c in channels]
    print(json.dumps({"ok": True, "channels": out, "checked_mappings": settings.checked_mappings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
