"""Scanned pages as bytes: check a file, make it one PDF, render, read barcodes, find blanks.

No database here: functions take and give bytes (and Pillow images).

* :func:`normalize` – a PDF or a (multi-page) TIFF, PNG or JPEG becomes one PDF (images are
  placed at their scanned resolution); anything else is a :class:`BadScan` with a reason in words
  (not an image or PDF, encrypted, no pages, unreadable).
* :func:`analyse` – per page: the barcodes it carries (pyzbar on Debian's libzbar) and its ink,
  the share of dark pixels inside the margins (a blank page has almost none).
* :func:`render` / :func:`png` – one page as an image (pypdfium2), turned by ``rotate`` degrees
  clockwise: thumbnails, the page viewer, OCR confidence.
* :func:`assemble` – a document's PDF from pages of one or more batch PDFs, each turned as the
  clerk asked (pypdf, the pages copied, not re-rendered).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# The PDF and image libraries (pypdfium2, Pillow, pypdf, pyzbar: ~40 MB resident together) are
# imported where a page is handled, not with this module: an engine process that never receives
# a scan (the MLLP listeners and workers) does not carry them (docs/benchmarks.md, #21).

ANALYSE_DPI = 100
IMAGE_TYPES = {"TIFF": "image/tiff", "PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg"}


class BadScan(Exception):
    """A file that cannot be a scanned batch; ``reason`` says why, in words."""

    def __init__(self, reason: str, media_type: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.media_type = media_type


@dataclass
class Normalized:
    pdf: bytes
    pages: int
    media_type: str


@dataclass
class PageInfo:
    barcodes: list[str]
    ink: float


def normalize(data: bytes) -> Normalized:
    """The batch as one PDF, or BadScan."""
    if not data:
        raise BadScan("the file is empty")
    if data[:1024].lstrip().startswith(b"%PDF"):
        return Normalized(_check_pdf(data), _pdf_pages(data), "application/pdf")
    from PIL import Image, ImageSequence

    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format or ""
    except Exception:
        raise BadScan("not a PDF or an image (TIFF, PNG, JPEG)") from None
    if fmt not in IMAGE_TYPES:
        raise BadScan(f"an image of a kind scanners do not write ({fmt or 'unknown'})")
    media = IMAGE_TYPES[fmt]
    try:
        frames = []
        dpi = 200.0
        for frame in ImageSequence.Iterator(img):
            info = frame.info.get("dpi")
            if info and info[0]:
                dpi = float(info[0])
            frames.append(frame.convert("L" if frame.mode in ("1", "L", "I;16", "I") else "RGB"))
    except Exception:
        raise BadScan("the image cannot be read (truncated or damaged)", media) from None
    if not frames:
        raise BadScan("the file has no pages", media)
    out = io.BytesIO()
    frames[0].save(out, "PDF", save_all=True, append_images=frames[1:], resolution=dpi)
    return Normalized(out.getvalue(), len(frames), media)


def _check_pdf(data: bytes) -> bytes:
    import pypdfium2
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadScan("the PDF is encrypted", "application/pdf")
        n = len(reader.pages)
    except BadScan:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError):
        raise BadScan("the PDF cannot be read", "application/pdf") from None
    if n == 0:
        raise BadScan("the PDF has no pages", "application/pdf")
    try:
        doc = pypdfium2.PdfDocument(data)
        doc.close()
    except pypdfium2.PdfiumError:
        raise BadScan("the PDF cannot be read", "application/pdf") from None
    return data


def _pdf_pages(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


def render(pdf: bytes, page: int, dpi: int = ANALYSE_DPI, rotate: int = 0, gray: bool = False) -> Image.Image:
    """Page ``page`` (0-based) as an image at ``dpi``, turned ``rotate`` degrees clockwise."""
    import pypdfium2

    doc = pypdfium2.PdfDocument(pdf)
    try:
        bitmap = doc[page].render(scale=dpi / 72, rotation=rotate % 360, grayscale=gray)
        return bitmap.to_pil().copy()
    finally:
        doc.close()


def png(pdf: bytes, page: int, dpi: int, rotate: int = 0) -> bytes:
    out = io.BytesIO()
    render(pdf, page, dpi, rotate).save(out, "PNG", optimize=True)
    return out.getvalue()


def ink(image: Image.Image, margin: float = 0.04) -> float:
    """The share of dark pixels inside the margins (scanner edges and punch holes left out)."""
    g = image.convert("L")
    w, h = g.size
    box = (int(w * margin), int(h * margin), int(w * (1 - margin)), int(h * (1 - margin)))
    inner = g.crop(box)
    hist = inner.histogram()
    dark = sum(hist[:128])
    return dark / max(1, inner.size[0] * inner.size[1])


def analyse(pdf: bytes) -> list[PageInfo]:
    """Barcodes and ink of every page."""
    import pypdfium2
    from pyzbar import pyzbar

    doc = pypdfium2.PdfDocument(pdf)
    out = []
    try:
        for i in range(len(doc)):
            img = doc[i].render(scale=ANALYSE_DPI / 72, grayscale=True).to_pil()
            codes = [c.data.decode("utf-8", "replace") for c in pyzbar.decode(img)]
            out.append(PageInfo(barcodes=codes, ink=round(ink(img), 5)))
    finally:
        doc.close()
    return out


def assemble(pages: list[tuple[bytes, int, int]]) -> bytes:
    """One PDF of ``(batch pdf, page, rotate)`` in order."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    readers: dict[int, PdfReader] = {}
    for pdf, index, rotate in pages:
        reader = readers.get(id(pdf))
        if reader is None:
            reader = readers[id(pdf)] = PdfReader(io.BytesIO(pdf))
        added = writer.add_page(reader.pages[index])
        if rotate % 360:
            added.rotate(rotate % 360)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_count(pdf: bytes) -> int:
    return _pdf_pages(pdf)
