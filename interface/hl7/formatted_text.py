"""Formatted text (FT, HL7 v2.5.1 section 2.7.6) rendered as plain text. Pure: text in, text out.

What each escape becomes (``\\`` standing for the message's escape character):

==============  ===================================================================================
``\\.br\\``      ends the output line (the next starts at the left margin)
``\\.sp n\\``    ends the output line and skips to ``n`` lines further down: ``n`` line breaks (``n``
                absent: one, the same as ``\\.br\\``). The next line starts at the left margin, not at
                the column where the text stopped (plain text has no carriage without a line feed)
``\\.in ±n\\``   left margin: ``+n``/``-n`` moves it, a bare ``n`` sets it (never below 0); it applies
                from the next line that starts (2.7.6: it may not follow printable text on a line)
``\\.ti ±n\\``   a temporary indent, relative to the margin (a bare ``n`` sets it): for the next line
                that starts only
``\\.sk n\\``    ``n`` spaces (skip to the right)
``\\.ce\\``      ends the output line (if it holds text) and centres the next one in ``width``
``\\.fi\\``      fill mode (the default): a line longer than ``width`` is word-wrapped, the wrapped
                part at the left margin
``\\.nf\\``      no-fill mode: lines are kept as sent, however long
``\\H\\ \\N\\``    start / end of highlighting: plain text has none, so they vanish (the raw FT keeps them)
``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\``  the delimiters (field, component, subcomponent, repetition, escape, truncation)
``\\Xhh..\\``    the bytes, as UTF-8 (else Latin-1); ``\\Cxxyy\\``/``\\Mxxyyzz\\`` (character-set
                switches) are dropped
anything else   kept verbatim, escape characters included (nothing is silently lost)
==============  ===================================================================================

An escaped escape (``\\E\\.br\\E\\``) is the literal text ``\\.br\\``, never a line break. An
unterminated escape is kept verbatim. Several values (OBX lines of one document) are one text:
:meth:`FormattedText.feed` ends a line between values and keeps the margin and fill mode.
"""

from __future__ import annotations

import re
import textwrap

from interface.hl7.message import DEFAULT_ENCODING, Encoding

WIDTH = 80  # the output device's line width for fill mode and centring (2.7.6 leaves it to us)

_NUM = re.compile(r"^\s*([+-]?)\s*(\d{1,4})\s*$")


def _number(arg: str) -> tuple[str, int] | None:
    """``(sign, n)`` of a command argument, None if it is not a number."""
    m = _NUM.match(arg)
    return (m.group(1), int(m.group(2))) if m else None


class FormattedText:
    """The renderer's state: finished lines, the current line, margin, fill mode."""

    def __init__(self, enc: Encoding = DEFAULT_ENCODING, width: int = WIDTH):
        self.enc = enc
        self.width = width
        self.lines: list[str] = []
        self.cur: list[str] = []
        self.margin = 0
        self.temp: int | None = None  # .ti for the next line that starts
        self.indent: int | None = None  # frozen when the current line gets its first character
        self.center = False
        self.fill = True
        self._started = False  # any value fed yet

    # -- input -------------------------------------------------------------------------------

    def feed(self, value: str) -> None:
        """Add one FT value; a value after the first starts on a new line."""
        if self._started:
            self._end_line()
        self._started = True
        esc = self.enc.escape
        if not esc:
            self._text(value)
            return
        i, n = 0, len(value)
        while i < n:
            j = value.find(esc, i)
            if j < 0:
                self._text(value[i:])
                break
            if j > i:
                self._text(value[i:j])
            k = value.find(esc, j + 1)
            if k < 0:  # unterminated: kept as sent
                self._text(value[j:])
                break
            self._escape(value[j + 1 : k], value[j : k + 1])
            i = k + 1

    def text(self) -> str:
        """The rendered text so far (the current line included, without a trailing newline)."""
        return "\n".join(self.lines + [self._render_line()])

    def take(self) -> str:
        """The rendered text so far, then forget it; margin, indent and fill mode carry on (the
        next value of the same document starts a new line)."""
        out = self.text()
        self.lines, self.cur, self.indent, self._started = [], [], None, False
        self.center = False
        return out

    # -- escapes -----------------------------------------------------------------------------

    def _escape(self, body: str, whole: str) -> None:
        enc = self.enc
        delimiters = {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": enc.escape,
            "P": enc.truncation,
        }
        if body in delimiters and delimiters[body]:
            self._text(delimiters[body])
        elif body in ("H", "N"):
            pass
        elif body[:1] == "X" and len(body) > 1:
            try:
                data = bytes.fromhex(body[1:])
            except ValueError:
                self._text(whole)
                return
            try:
                self._text(data.decode("utf-8"))
            except UnicodeDecodeError:
                self._text(data.decode("latin-1"))
        elif body[:1] in ("C", "M") and len(body) > 1 and re.fullmatch(r"[0-9A-Fa-f]+", body[1:]):
            pass
        elif body.startswith("."):
            if not self._command(body[1:3], body[3:]):
                self._text(whole)
        else:
            self._text(whole)

    def _command(self, name: str, arg: str) -> bool:
        """Apply a formatting command; False if it is unknown (kept verbatim by the caller)."""
        num = _number(arg) if arg.strip() else None
        if arg.strip() and num is None:
            return False
        if name == "br" and num is None:
            self._end_line()
        elif name == "sp":
            count = num[1] if num else 1
            if num is not None and num[0] == "-":
                return False
            self._end_line()
            for _ in range(max(count, 1) - 1):
                self.lines.append("")
        elif name == "in" and num is not None:
            sign, n = num
            self.margin = max(0, self.margin + n if sign == "+" else self.margin - n if sign == "-" else n)
        elif name == "ti" and num is not None:
            sign, n = num
            self.temp = max(0, self.margin + n if sign == "+" else self.margin - n if sign == "-" else n)
        elif name == "sk":
            count = num[1] if num else 1
            if num is not None and num[0] == "-":
                return False
            self._text(" " * count)
        elif name == "ce" and num is None:
            if self.cur:
                self._end_line()
            self.center = True
        elif name == "fi" and num is None:
            self.fill = True
        elif name == "nf" and num is None:
            self.fill = False
        else:
            return False
        return True

    # -- lines -------------------------------------------------------------------------------

    def _text(self, s: str) -> None:
        if not s:
            return
        if self.indent is None:
            self.indent = self.temp if self.temp is not None else self.margin
            self.temp = None
        self.cur.append(s)

    def _render_line(self) -> str:
        body = "".join(self.cur)
        if not body:
            return ""
        if self.center:
            body = body.strip()
            return " " * max(0, (self.width - len(body)) // 2) + body
        indent = self.indent or 0
        if self.fill and self.width and indent + len(body) > self.width:
            room_first = max(1, self.width - indent)
            wrapped = textwrap.wrap(body, width=room_first, break_long_words=False, break_on_hyphens=False)
            if wrapped:
                first, rest = wrapped[0], " ".join(wrapped[1:])
                out = [" " * indent + first]
                if rest:
                    out += [
                        " " * self.margin + w
                        for w in textwrap.wrap(
                            rest,
                            width=max(1, self.width - self.margin),
                            break_long_words=False,
                            break_on_hyphens=False,
                        )
                    ]
                return "\n".join(out)
        return " " * indent + body

    def _end_line(self) -> None:
        self.lines.append(self._render_line())
        if self.cur:
            self.center = False
        self.cur = []
        self.indent = None


def render(value: str | list[str], enc: Encoding = DEFAULT_ENCODING, width: int = WIDTH) -> str:
    """One FT value (or the values of one document, one line each) as plain text."""
    ft = FormattedText(enc, width)
    for v in [value] if isinstance(value, str) else value:
        ft.feed(v)
    return ft.text()
