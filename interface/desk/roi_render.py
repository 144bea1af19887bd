"""Drawing for the release packet and the accounting letter (fpdf2 pages, pypdf stamping). Pure.

* :class:`Page` — an fpdf2 document in points on US Letter with the packet's fonts, a fixed
  creation date (so the same inputs give the same bytes) and a bottom margin kept free for the
  footer; :meth:`Page.pdf` is its bytes.
* :func:`fonts` — DejaVu Sans / Sans Mono (Debian ``fonts-dejavu-core``) when installed, for names
  outside Latin-1; otherwise fpdf2's core Helvetica/Courier with the characters they cannot show
  replaced by ``?`` (:func:`fit`), never a failure.
* :func:`stamp` — writes one footer line on every page of a pypdf writer: an fpdf2 overlay page of
  the same size merged onto each page (``merge_transformed_page``), pages turned by ``/Rotate``
  first made upright; with ``watermark``, that text large and pale across each page too (a
  packet's preview: "PREVIEW - not released").
"""

from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter, Transformation

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
FONT_ENV = "INTERFACE_PDF_FONT_DIR"  # a directory holding DejaVuSans*.ttf, tried first
FOOTER_MARGIN = 42.0  # points kept free at the bottom of rendered pages for the footer
FOOTER_Y = 18.0  # the footer's baseline above the page's lower edge (points)
MARGIN = 54.0  # left/right/top margin of rendered pages (3/4 inch)
PRODUCER = "interface-engine"
WATERMARK_SIZE = 54.0  # points: the preview's mark across the page
# typographic characters outside Latin-1, as the core fonts can show them
PLAIN = str.maketrans(
    {"\u2014": "-", "\u2013": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}
)

# fpdf2 names the characters a font lacks in a warning: they may be a patient's name.
logging.getLogger("fpdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Fonts:
    """Font family names for ``set_font`` and whether they are Unicode (TTF) or Latin-1 (core)."""

    sans: str
    mono: str
    unicode: bool
    files: tuple[tuple[str, str, Path], ...] = ()  # (family, style, path) to add_font


def fonts() -> Fonts:
    """DejaVu when its files are found (``$INTERFACE_PDF_FONT_DIR``, then Debian's directory)."""
    dirs = [Path(os.environ[FONT_ENV])] if os.environ.get(FONT_ENV) else []
    for d in [*dirs, *FONT_DIRS]:
        files = (
            ("DejaVu", "", d / "DejaVuSans.ttf"),
            ("DejaVu", "B", d / "DejaVuSans-Bold.ttf"),
            ("DejaVuMono", "", d / "DejaVuSansMono.ttf"),
            ("DejaVuMono", "B", d / "DejaVuSansMono-Bold.ttf"),
        )
        if all(p.is_file() for _, _, p in files):
            return Fonts("DejaVu", "DejaVuMono", True, files)
    return Fonts("helvetica", "courier", False)


def pdf_date(day: date) -> datetime:
    """The fixed creation time of a packet or letter: midnight UTC of its date."""
    return datetime.combine(day, time(0, 0), tzinfo=timezone.utc)


class Page(FPDF):
    """An fpdf2 document set up the packet's way (see the module docstring)."""

    def __init__(self, day: date, title: str = ""):
        super().__init__(unit="pt", format="letter")
        self.face = fonts()
        self._added: set[tuple[str, str]] = set()
        self.set_creation_date(pdf_date(day))
        self.set_producer(PRODUCER)
        if title:
            self.set_title(title)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=FOOTER_MARGIN)
        self.sans(10)

    def _font(self, family: str, style: str, size: float) -> None:
        """``set_font``, adding a TTF the first time it is used (parsing one costs ~50 ms)."""
        if (family, style) not in self._added:
            for fam, sty, path in self.face.files:
                if (fam, sty) == (family, style):
                    self.add_font(fam, sty, str(path))
            self._added.add((family, style))
        self.set_font(family, style, size)

    def fit(self, text: str) -> str:
        """The text as the current font can show it (core fonts: Latin-1, dashes and curly quotes
        made plain, other characters become ``?``)."""
        if self.face.unicode:
            return text
        return text.translate(PLAIN).encode("latin-1", "replace").decode("latin-1")

    def sans(self, size: float = 10, bold: bool = False) -> None:
        self._font(self.face.sans, "B" if bold else "", size)

    def mono(self, size: float = 9, bold: bool = False) -> None:
        self._font(self.face.mono, "B" if bold else "", size)

    def para(
        self, text: str, size: float = 10, bold: bool = False, gap: float = 2, mono: bool = False
    ) -> None:
        """A paragraph across the page (wrapped), then a small gap."""
        (self.mono if mono else self.sans)(size, bold)
        self.multi_cell(0, size * 1.3, self.fit(text), align="L", new_x="LMARGIN", new_y="NEXT")
        if gap:
            self.ln(gap)

    def heading(self, text: str, size: float = 14) -> None:
        self.para(text, size=size, bold=True, gap=6)

    def pairs(self, rows: list[tuple[str, str]], label_width: float = 130, size: float = 10) -> None:
        """Label / value rows (the value wrapped beside its label)."""
        for label, value in rows:
            self.sans(size, True)
            y = self.get_y()
            self.multi_cell(label_width, size * 1.3, self.fit(label), new_x="RIGHT", new_y="TOP")
            self.sans(size)
            self.set_xy(self.l_margin + label_width, y)
            self.multi_cell(0, size * 1.3, self.fit(value or "-"), align="L", new_x="LMARGIN", new_y="NEXT")
            self.ln(1)

    def pdf(self) -> bytes:
        return bytes(self.output())


def readable_text(data: bytes) -> str:
    """Stored text as characters: UTF-8 (a BOM dropped), else Latin-1; tabs expanded, other
    control characters (form feed kept, it starts a page) removed."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8)
    return "".join(ch for ch in text if ch in "\n\f" or ch >= " " and ch != "\x7f")


def _fit_size(pdf: Page, text: str, width: float, size: float) -> float:
    while size > 4:
        pdf.sans(size)
        if pdf.get_string_width(text) <= width:
            break
        size -= 0.5
    return size


def _watermark(pdf: Page, text: str, w: float, h: float) -> None:
    """``text`` across the page from lower left to upper right, large, pale and half transparent."""
    angle = math.degrees(math.atan2(h, w))
    size = WATERMARK_SIZE
    pdf.sans(size, True)
    text = pdf.fit(text)
    diagonal = math.hypot(w, h) * 0.8
    while size > 6 and pdf.get_string_width(text) > diagonal:
        size -= 2
        pdf.sans(size, True)
    width = pdf.get_string_width(text)
    with pdf.local_context(fill_opacity=0.35, text_color=(200, 30, 30)):
        with pdf.rotation(angle, w / 2, h / 2):
            pdf.text(w / 2 - width / 2, h / 2 + size * 0.35, text)


def stamp(writer: PdfWriter, lines: list[str], day: date, watermark: str | None = None) -> None:
    """Merge ``lines[i]`` as a footer onto page ``i`` of ``writer`` (one line, centred, shrunk to
    fit the page's width), on an overlay of the page's visible size; ``watermark`` across every
    page as well."""
    overlay = Page(day)
    overlay.set_auto_page_break(False)
    boxes = []
    for page, line in zip(writer.pages, lines, strict=True):
        if page.rotation:
            page.transfer_rotation_to_content()
        box = page.cropbox
        x0, y0 = float(box.left), float(box.bottom)
        w, h = float(box.width), float(box.height)
        boxes.append((x0, y0))
        overlay.add_page(format=(w, h))
        text = overlay.fit(line)
        size = _fit_size(overlay, text, w - 24, 8)
        overlay.set_text_color(60, 60, 60)
        overlay.set_xy(12, h - FOOTER_Y - size)
        overlay.cell(w - 24, size * 1.2, text, align="C")
        if watermark:
            _watermark(overlay, watermark, w, h)
    stamps = PdfReader(io.BytesIO(overlay.pdf()))
    for page, over, (x0, y0) in zip(writer.pages, stamps.pages, boxes, strict=True):
        page.merge_transformed_page(over, Transformation().translate(x0, y0))
