"""An unexpected failure while mapping becomes an error item for a clerk, and the log line says
where in the code it happened without quoting the exception's text (it may hold patient data)."""

from __future__ import annotations

import logging
from pathlib import Path

from interface.config.channels import load_channels
from interface.engine.processing import Pipeline
from interface.hl7.errors import PermanentError

ROOT = Path(__file__).resolve().parent.parent
RAW = (
    b"MSH|^~\\&|REG|HOSP|IF|HOSP|20261122110000||ADT^A08^ADT_A01|C1|P|2.5.1\r"
    b"PID|1||100001^^^HOSP^MR||CHEN^WEI||19571102|M\r"
)


class _Exploding:
    root = "chart"

    def apply(self, msg, params):
        raise ValueError("CHEN WEI born 19571102")


def test_unexpected_mapping_failure_is_an_error_item_and_the_log_has_no_patient_data(caplog):
    channels = load_channels(ROOT / "channels")
    pipeline = Pipeline(channels, {"adt": _Exploding()})
    with caplog.at_level(logging.INFO, logger="interface.engine.processing"):
        prep = pipeline.prepare("adt", "store", RAW)
    assert isinstance(prep.error, PermanentError)
    assert prep.error.reason == "processing_error" and "ValueError" in str(prep.error)
    text = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    assert "prepare failed: ValueError at test_processing_logs.py:" in caplog.text
    for secret in ("CHEN", "19571102"):
        assert secret not in text
