"""Scan channels: where scanned batches are dropped, and the quality limits they are held to.

One YAML file per scan channel under ``channels/scan/`` (a folder of its own, so the MLLP
channel loader never reads them)::

    name: records-scanner
    inbox: var/scan/inbox          # the folder the scanner or multifunction printer writes to
    poll_seconds: 5
    min_confidence: 60             # a page whose OCR confidence is lower is flagged (unreadable, skewed)
    blank_ink: 0.003               # a page with less dark ink than this share of its area is blank

Files in ``inbox`` are taken once they stop growing; after the batch is journalled they move to
``<inbox>/../accepted`` (or ``rejected``, with the reason in the batch list). Every problem is a
``file:line: message``, from ``interface check`` (:func:`check_paths`) and when the engine starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

UPLOAD = "upload"  # the channel name of batches uploaded through the console or the API


class ScanChannel(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    enabled: bool = True
    inbox: str = Field(description="the drop folder (relative paths: from the working directory)")
    poll_seconds: float = Field(5.0, gt=0)
    min_confidence: float = Field(60.0, ge=0, le=100, description="OCR confidence below this flags a page")
    blank_ink: float = Field(
        0.003, ge=0, le=1, description="share of dark pixels under which a page is blank"
    )

    @property
    def inbox_path(self) -> Path:
        return Path(self.inbox)

    @property
    def accepted_path(self) -> Path:
        return self.inbox_path.parent / "accepted"

    @property
    def rejected_path(self) -> Path:
        return self.inbox_path.parent / "rejected"


DEFAULT = ScanChannel(name=UPLOAD, inbox="var/scan/inbox")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(list(path.glob("*.yaml")) + list(path.glob("*.yml")))
    return [path]


def _load(files: list[Path]) -> tuple[list[ScanChannel], list[str]]:
    """The channels of ``files`` and every problem (``file:line: message``): a file's own, a name
    used twice or the reserved one, an inbox two channels share."""
    out: list[ScanChannel] = []
    problems: list[str] = []
    names: dict[str, str] = {}
    inboxes: dict[Path, str] = {}
    for f in files:
        try:
            doc = load_yaml(f, keep_going=True)
            ch = validate(ScanChannel, doc)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if ch.name == UPLOAD:
            problems.append(f"{doc.where(('name',))}: scan channel name {UPLOAD!r} is reserved for uploads")
        elif ch.name in names:
            problems.append(
                f"{doc.where(('name',))}: scan channel name {ch.name!r} is used by {names[ch.name]} too"
            )
        inbox = Path(os.path.normpath(ch.inbox_path))
        if inbox in inboxes:
            problems.append(f"{doc.where(('inbox',))}: inbox {ch.inbox!r} is {inboxes[inbox]}'s too")
        names.setdefault(ch.name, str(f))
        inboxes.setdefault(inbox, ch.name)
        out.append(ch)
    return out, problems


def load_scan_channels(directory: str | Path) -> list[ScanChannel]:
    """Every ``*.yaml`` in ``directory`` (none if it does not exist); ConfigError lists every problem."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out, problems = _load(_files(d))
    if problems:
        raise ConfigError(problems)
    return out


def is_scan_path(path: str | Path) -> bool:
    """Whether ``path`` is a scan channel folder or file (``channels/scan``, ``channels/scan/x.yaml``)."""
    p = Path(path).resolve()
    return p.name == "scan" if p.is_dir() else p.parent.name == "scan"


def check_paths(paths: list[str | Path]) -> list[str]:
    """``interface check``: the problems of the scan channels among ``paths`` (a scan folder or
    file, or a channels folder's ``scan/`` beside its MLLP channels), as ``file:line: message``."""
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            continue  # (the caller reports it)
        if is_scan_path(p):
            files.extend(_files(p))
        elif p.is_dir() and not {"mappings", "rules"} & set(p.resolve().parts) and (p / "scan").is_dir():
            files.extend(_files(p / "scan"))
    return _load(files)[1]


def settings_for(channels: list[ScanChannel], name: str) -> ScanChannel:
    """The channel ``name``'s settings; the defaults for uploads and unknown names."""
    return next((c for c in channels if c.name == name), DEFAULT)
