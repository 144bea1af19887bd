"""What ``interface run`` is told: :class:`Settings`, a plain dataclass.

Its own module, importing nothing of the engine, so that the ``--workers`` supervisor
(``interface.ops.cluster``), which only binds sockets and watches its children, does not load
the engine to hold its settings (``interface.ops.runtime`` imports the whole pipeline, ~60 MB of
code per process). :func:`to_spec` / :func:`from_spec` carry them to a child process as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path


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
    inherited_fds: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # channel -> (fd, family): run --workers N
    pid_file: Path | None = None  # written by `run` (`interface reload` finds the engine by it)
    alerts_file: Path | None = None  # alerts.yaml (interface.ops.alerts); None or absent: no alerts
    content_dir: Path | None = None  # a shared document content directory (content.store_dir)
    reload_events: bool = True  # record config_reloaded / config_rejected (under --workers N only
    # child 0 does, so that a reload every child makes in place is one event, not N)
    checked_mappings: list[str] = field(default_factory=list)  # mapping data whose HL7 paths the
    # supervisor's check found sound (mapping.loader.paths_digest): a --workers child skips that check

    @property
    def url(self) -> str:
        from interface.store.db import resolve_url  # SQLAlchemy: only where a database is used

        return resolve_url(self.db_url, self.var_dir)


_PATHS = frozenset(
    (
        "channels_dir",
        "mappings_dir",
        "rules_file",
        "var_dir",
        "ready_file",
        "pid_file",
        "alerts_file",
        "content_dir",
    )
)


def to_spec(settings: Settings) -> dict:
    """``settings`` as JSON values (paths as strings)."""
    out = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        out[f.name] = str(value) if f.name in _PATHS and value is not None else value
    return out


def from_spec(spec: dict) -> Settings:
    """The :class:`Settings` of :func:`to_spec`'s JSON."""
    values = dict(spec)
    for name in _PATHS:
        if values.get(name) is not None:
            values[name] = Path(values[name])
    if values.get("web_tls"):
        values["web_tls"] = tuple(values["web_tls"])
    values["inherited_fds"] = {k: tuple(v) for k, v in (values.get("inherited_fds") or {}).items()}
    return Settings(**values)
