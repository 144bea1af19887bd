"""Scanned-looking paper for the scanning tests, made here (no sample files).

Pages are printed by fpdf2 and rasterised at scanner-like resolution (pypdfium2), with a little
grey noise, so the batch PDFs hold images only, as a scanner writes them: a cover sheet with its
QR code, pages of printed text, a blank page, a page turned on its side.
"""

from __future__ import annotations

import io
import random

import pypdfium2
from fpdf import FPDF
from PIL import Image

from interface.rules import coversheet
from interface.store.scan_coversheet import sheet_pdf

DPI = 150


def _raster(pdf: bytes, dpi: int = DPI) -> Image.Image:
    doc = pypdfium2.PdfDocument(pdf)
    try:
        return doc[0].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        doc.close()


def _noise(img: Image.Image, seed: int, specks: int = 40) -> Image.Image:
    rng = random.Random(seed)
    px = img.load()
    w, h = img.size
    for _ in range(specks):
        x, y = rng.randrange(w), rng.randrange(h)
        px[x, y] = rng.randrange(90, 200)
    return img


def text_page(lines: list[str], *, rotate: int = 0, seed: int = 1) -> Image.Image:
    """A small page (A6, 105 x 148 mm) of printed text, scanned at 150 dpi; ``rotate`` turns the paper."""
    pdf = FPDF(format=(105, 148))
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", "", 13)
    for line in lines:
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    img = _noise(_raster(bytes(pdf.output())), seed)
    return img.rotate(rotate, expand=True, fillcolor=255) if rotate else img


def blank_page(seed: int = 2) -> Image.Image:
    pdf = FPDF(format=(105, 148))
    pdf.add_page()
    return _noise(_raster(bytes(pdf.output())), seed, specks=25)


def cover_page(sheet: coversheet.CoverSheet, *, tamper: bool = False) -> Image.Image:
    """A printed cover sheet, scanned; ``tamper`` prints a barcode whose checksum is wrong."""
    if tamper:
        text = coversheet.encode(sheet)
        text = text[:-8] + ("00000000" if not text.endswith("00000000") else "11111111")
        from interface.store.scan_coversheet import qr_png

        page = Image.new("L", (827, 1169), 255)
        page.paste(Image.open(io.BytesIO(qr_png(text, scale=6))).convert("L"), (250, 250))
        return page
    return _raster(sheet_pdf(sheet), dpi=100)


def batch_pdf(pages: list[Image.Image], dpi: int = DPI) -> bytes:
    """The pages as one image-only PDF (what a scanner writes)."""
    out = io.BytesIO()
    rgb = [p.convert("L") for p in pages]
    rgb[0].save(out, "PDF", save_all=True, append_images=rgb[1:], resolution=dpi)
    return out.getvalue()


def batch_tiff(pages: list[Image.Image], dpi: int = DPI) -> bytes:
    out = io.BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], dpi=(dpi, dpi), compression="tiff_lzw")
    return out.getvalue()
