"""OCR of a scanned document: a text layer (ocrmypdf), its text, and each page's confidence.

ocrmypdf (on Debian's tesseract and ghostscript) runs as a child process: a hung or crashing
OCR is killed by its timeout and cannot take the engine down, and ocrmypdf's own logging and
signal handling stay out of the engine's. Each page's confidence (the mean word confidence, 0-100;
None when the page has no words) comes from tesseract's TSV output on the page rendered at
150 dpi, turned as the clerk turned it. Nothing from the pages is logged.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interface.store import scan_pages

TIMEOUT = 600.0
CONFIDENCE_DPI = 150


class OcrError(Exception):
    """OCR did not finish: retried by the scan worker's policy."""


@dataclass
class OcrResult:
    pdf: bytes  # the document with its text layer
    text: str
    confidence: list[float | None]  # per page


def run(pdf: bytes, *, language: str = "eng", timeout: float = TIMEOUT) -> OcrResult:
    with tempfile.TemporaryDirectory(prefix="interface-ocr-") as tmp:
        d = Path(tmp)
        (d / "in.pdf").write_bytes(pdf)
        cmd = [
            sys.executable,
            "-m",
            "ocrmypdf",
            "--quiet",
            "--language",
            language,
            "--output-type",
            "pdf",
            "--optimize",
            "0",
            "--jobs",
            "1",
            "--force-ocr",
            "--sidecar",
            str(d / "text.txt"),
            str(d / "in.pdf"),
            str(d / "out.pdf"),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise OcrError(f"ocrmypdf did not finish in {timeout:g} s") from None
        if done.returncode != 0:
            raise OcrError(f"ocrmypdf failed (exit status {done.returncode})")
        text = (d / "text.txt").read_text("utf-8", "replace").replace("\f", "\n").strip()
        out = (d / "out.pdf").read_bytes()
        conf = [page_confidence(pdf, i, d) for i in range(scan_pages.page_count(pdf))]
    return OcrResult(out, text, conf)


def page_confidence(pdf: bytes, page: int, tmp: Path, language: str = "eng") -> float | None:
    img = tmp / f"page-{page}.png"
    scan_pages.render(pdf, page, CONFIDENCE_DPI, gray=True).save(img)
    try:
        done = subprocess.run(
            ["tesseract", str(img), "-", "-l", language, "tsv"], capture_output=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    confs = []
    for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) == 12 and cols[11].strip():
            try:
                c = float(cols[10])
            except ValueError:
                continue
            if c >= 0:
                confs.append(c)
    return round(sum(confs) / len(confs), 1) if confs else None
