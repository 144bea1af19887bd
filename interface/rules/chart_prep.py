"""Chart-preparation settings (``rules/chart_prep.yaml``): what the chart-prep worklist counts as
a problem before a patient's appointment (interface.desk.chart_prep applies them).

* ``consent_types`` – document types (TXA-2) that are a consent; a patient with none of them on
  file (cancelled and obsolete ones do not count) has ``missing consent``;
* ``statuses`` – the appointment statuses (table 0278, as stored) the worklist looks at;
* ``identity_reasons`` – error-queue reasons that are an unresolved identity question;
* ``default_days`` – the window (now .. now + N days) when none is asked for.

Every setting has a default, so a site without the file gets the same rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field

from interface.config.yamlfile import Strict, load_yaml, validate
from interface.hl7.errors import ConfigError

DEFAULT_FILE = Path("rules/chart_prep.yaml")


class ChartPrepSettings(Strict):
    version: Literal[1] = 1
    consent_types: list[str] = Field(default_factory=lambda: ["CN", "CONSENT"], min_length=1)
    statuses: list[str] = Field(default_factory=lambda: ["booked", "pending"], min_length=1)
    identity_reasons: list[str] = Field(default_factory=lambda: ["identity_mismatch", "unknown_patient"])
    default_days: int = Field(default=7, ge=0, le=366)


def load_settings(path: str | Path) -> ChartPrepSettings:
    """Load and validate a settings file; ConfigError lists every problem as ``file:line: message``."""
    return validate(ChartPrepSettings, load_yaml(path))


def settings_or_default(path: str | Path | None = DEFAULT_FILE) -> ChartPrepSettings:
    """The file's settings if it exists, else the defaults."""
    if path is not None and Path(path).is_file():
        return load_settings(path)
    return ChartPrepSettings()


def is_settings_file(path: str | Path) -> bool:
    return Path(path).name.startswith("chart_prep")


def check_paths(paths: Iterable[str | Path]) -> list[str]:
    problems: list[str] = []
    for p in paths:
        try:
            load_settings(p)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems
