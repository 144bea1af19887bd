"""The highlighted hits of a content search, under the masking rule.

A hit is shown as a short snippet of the message around the first match, HTML-escaped, every
match in it wrapped in ``<mark>``. The snippet is cut from the message **as the reader may see
it** (``masking.message_text``): the identifying fields and clinical text of
``masking.MESSAGE_FIELDS`` are ``•••`` for every role unless the search itself was revealed with
a reason. A message that matches only inside masked fields (a search by a patient's name, say)
is still listed, with the words "match in a masked field" instead of text: a search never shows
more than opening the message would.
"""

from __future__ import annotations

import html
import re

from interface.desk import masking
from interface.store.message_search import Term

WINDOW = 60  # characters shown each side of the first hit
MASKED_HIT = '<span class="muted">match in a masked field</span>'


def pattern(terms: list[Term]) -> re.Pattern | None:
    """One regular expression finding any of the terms as the tokenizers do: whole words (a
    prefix for ``word*``), the words of a phrase separated by anything but letters and digits."""
    alts = []
    for t in terms:
        body = r"[\W_]+".join(re.escape(w) for w in t.words)
        alts.append(r"(?<![^\W_])" + body + ("" if t.prefix else r"(?![^\W_])"))
    return re.compile("|".join(alts), re.IGNORECASE) if alts else None


def snippet(text: str, terms: list[Term], reveal: bool = False) -> str | None:
    """Safe HTML: the message around its first hit, hits marked; :data:`MASKED_HIT` when every
    hit is in a masked field; None when the text holds no hit (e.g. past the indexed bytes)."""
    rx = pattern(terms)
    if rx is None:
        return None
    shown = masking.message_text(text, reveal).replace("\n", " ⏎ ")
    first = rx.search(shown)
    if first is None:
        return MASKED_HIT if rx.search(text) else None
    start = max(0, first.start() - WINDOW)
    end = min(len(shown), first.end() + WINDOW)
    window = shown[start:end]
    out = ["…" if start else ""]
    pos = 0
    for m in rx.finditer(window):
        out.append(html.escape(window[pos : m.start()]))
        out.append("<mark>" + html.escape(m.group(0)) + "</mark>")
        pos = m.end()
    out.append(html.escape(window[pos:]))
    out.append("…" if end < len(shown) else "")
    return "".join(out)
