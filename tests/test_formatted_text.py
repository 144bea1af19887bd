"""The FT renderer (HL7 v2.5.1 2.7.6): one test per escape, nesting, and unknown escapes kept."""

from __future__ import annotations

import pytest

from interface.hl7.formatted_text import render
from interface.hl7.message import parse


def test_br_ends_the_line():
    """\\.br\\ begins a new output line; two in a row leave an empty line; a trailing one ends the text."""
    assert render("A\\.br\\B\\.br\\\\.br\\C\\.br\\") == "A\nB\n\nC\n"


@pytest.mark.parametrize(
    "ft, text",
    [(r"A\.sp\B", "A\nB"), (r"A\.sp 1\B", "A\nB"), (r"A\.sp 3\B", "A\n\n\nB"), (r"A\.sp +2\B", "A\n\nB")],
)
def test_sp_is_n_line_breaks(ft, text):
    """\\.sp n\\ ends the line and moves n lines down (absent n: one, like \\.br\\)."""
    assert render(ft) == text


def test_in_moves_the_margin_relative_or_absolute():
    """\\.in +n\\/\\.in -n\\ move the left margin, a bare \\.in n\\ sets it; never below 0."""
    assert (
        render(r"\.in +4\A\.br\\.in +2\B\.br\\.in -3\C\.br\\.in 1\D\.br\\.in -9\E")
        == "    A\n      B\n   C\n D\nE"
    )


def test_in_after_text_applies_from_the_next_line():
    """\\.in\\ may not follow printable text on a line: there it applies from the next line."""
    assert render(r"A\.in +2\B\.br\C") == "AB\n  C"


def test_ti_indents_one_line_only():
    """\\.ti ±n\\ indents the next line relative to the margin, then the margin applies again."""
    assert render(r"\.in +4\\.ti -2\A\.br\B\.br\\.ti +3\C\.br\D") == "  A\n    B\n       C\n    D"


def test_sk_skips_spaces_to_the_right():
    """\\.sk n\\ is n spaces."""
    assert render(r"A\.sk 3\B") == "A   B"


def test_ce_centres_the_next_line():
    """\\.ce\\ ends the current line and centres the next one in the line width."""
    assert render(r"before\.ce\TITLE\.br\after", width=20) == "before\n       TITLE\nafter"


def test_fill_mode_wraps_at_the_margin_and_nf_keeps_lines():
    """\\.fi\\ (the default) word-wraps a long line, wrapped part at the margin; \\.nf\\ keeps it."""
    words = "one two three four five six"
    assert render(rf"\.in 2\{words}", width=12) == "  one two\n  three four\n  five six"
    assert render(rf"\.nf\\.in 2\{words}", width=12) == "  " + words
    assert render(rf"\.nf\{words}\.br\\.fi\{words}", width=12) == words + "\none two\nthree four\nfive six"


def test_highlighting_vanishes_in_plain_text():
    """\\H\\ and \\N\\ (start/normal highlighting) leave the text between them."""
    assert render(r"a \H\bold\N\ word") == "a bold word"


def test_delimiter_and_hex_escapes():
    """\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ are the delimiters; \\Xhh\\ the bytes (UTF-8); \\C..\\ dropped."""
    assert render(r"\F\\S\\T\\R\\E\ \X48C3A9\ \C2842\x") == "|^&~\\ Hé x"


def test_escaped_escape_is_literal_text_never_a_command():
    """\\E\\.br\\E\\ is the text \\.br\\, not a line break."""
    assert render(r"A\E\.br\E\B") == r"A\.br\B"


@pytest.mark.parametrize("ft", [r"\Zlocal\ ", r"\.xx\ ", r"\.sp abc\ ", r"\.sp -1\ ", r"\.br 2\ ", r"\X4G\ "])
def test_unknown_or_malformed_escapes_are_kept_verbatim(ft):
    """An escape the renderer does not know (or cannot read) is kept as sent."""
    assert render("a" + ft + "b") == "a" + ft + "b"


def test_unterminated_escape_is_kept():
    """A lone escape character with no closing one is text."""
    assert render(r"50\50 \.br") == r"50\50 \.br"


def test_nesting_margin_temp_indent_highlight_and_nofill():
    """Commands combine: a margin with a temporary indent, highlighting inside an indented line,
    no-fill inside the margin, and the margin restored."""
    ft = (
        r"\.in +4\\.ti -4\1.\.sk 3\\H\Heading\N\\.br\text under it\.br\\.nf\\.in +2\  kept  as  is"
        r"\.br\\.in -6\\.fi\back"
    )
    assert render(ft, width=40) == "1.   Heading\n    text under it\n        kept  as  is\nback"


def test_values_of_one_document_share_margin_and_start_new_lines():
    """Several values (OBX lines): each on its own line, the margin carrying over."""
    assert render([r"\.in +2\A", "B", r"\.in -2\C"]) == "  A\n  B\nC"


def test_the_message_escape_character_is_used():
    """With a sender's own escape character (MSH-2 ^~#&) the commands use it."""
    enc = parse("MSH|^~#&|A|B|C|D|20260101||MDM^T02|1|P|2.5.1").encoding
    assert render("A#.br#B#T#C\\.br\\", enc) == "A\nB&C\\.br\\"
