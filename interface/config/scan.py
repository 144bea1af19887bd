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
``file:line: message`` when the engine starts.
"""

from __future__ import annotations

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


def load_scan_channels(directory: str | Path) -> list[ScanChannel]:
    """Every ``*.yaml`` in ``directory`` (none if it does not exist); ConfigError lists every problem."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out: list[ScanChannel] = []
    problems: list[str] = []
    for f in sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))):
        try:
            out.append(validate(ScanChannel, load_yaml(f)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    names = [c.name for c in out]
    for n in sorted({n for n in names if names.count(n) > 1 or n == UPLOAD}):
        problems.append(f"{d}: scan channel name {n!r} is used twice (or is the reserved {UPLOAD!r})")
    if problems:
        raise ConfigError(problems)
    return out


def settings_for(channels: list[ScanChannel], name: str) -> ScanChannel:
    """The channel ``name``'s settings; the defaults for uploads and unknown names."""
    return next((c for c in channels if c.name == name), DEFAULT)
