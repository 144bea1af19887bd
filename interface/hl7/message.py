"""HL7 v2 messages as text: encoding characters, character sets, segments, escapes, batches.

Two ways in, chosen by measurement (see docs/benchmarks.md):

* :func:`read_header` is the receive path. It decodes the bytes and reads only MSH (and whatever
  single segment the engine asks for, e.g. PID for the ordering key) with ``str.split``; it costs a
  few microseconds for a 1 KB ADT and does not grow with the message body.
* :func:`parse` builds a :class:`Message` (segments of raw fields, split into repetitions,
  components and subcomponents on demand) for mapping. It is a split-based tokenizer, about 20x
  faster than ``hl7.parse``, and it handles what python-hl7 does not: the v2.7 truncation
  character, MSH-2 with fewer than four characters, and LF/CRLF separators.

python-hl7 stays the reference (the tests compare our tokenizer with it on the corpus) and its
asyncio MLLP server is the benchmark baseline; hl7apy is used for structural validation and field
names (``interface.mapping.validation``).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from functools import lru_cache

from interface.hl7.errors import Location, ParseError

# MSH-18 character set names (HL7 table 0211) -> Python codecs.
CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UNICODE": "utf-8",  # deprecated name; in practice senders mean UTF-8 on the wire
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc-kr",
    "BIG-5": "big5",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "CNS 11643-1992": "big5",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}

SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")


@dataclass(frozen=True, slots=True)
class Encoding:
    """The delimiters a message declares in MSH-1 and MSH-2.

    ``subcomponent`` and ``truncation`` may be empty: some senders send only three encoding
    characters, and the truncation character exists only from v2.7 on.
    """

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    def from_msh(cls, segment: str) -> "Encoding":
        if len(segment) < 4 or segment[:3] not in ("MSH", "FHS", "BHS"):
            raise ParseError("message does not start with MSH", Location("MSH"))
        fs = segment[3]
        if fs.isalnum() or fs in "\r\n " or ord(fs) < 32 or ord(fs) == 127:
            raise ParseError(f"invalid field separator {fs!r}", Location("MSH", field=1))
        end = segment.find(fs, 4)
        chars = segment[4:] if end < 0 else segment[4:end]
        if len(chars) < 2 or len(chars) > 5 or len(set(chars + fs)) != len(chars) + 1:
            raise ParseError(f"invalid encoding characters {chars!r}", Location("MSH", field=2))
        if any(c.isalnum() or c in "\r\n " for c in chars):
            raise ParseError(f"invalid encoding characters {chars!r}", Location("MSH", field=2))
        if any(ord(c) < 32 or ord(c) == 127 for c in chars):  # a 0x0B or 0x1C would break
            # MLLP framing of the ACK, which is written in the same delimiters
            raise ParseError("control character among the encoding characters", Location("MSH", field=2))
        chars = chars + "\x00" * (5 - len(chars))
        c = ["" if ch == "\x00" else ch for ch in chars]
        return cls(fs, c[0], c[1], c[2], c[3], c[4])


DEFAULT_ENCODING = Encoding()

_ENCODINGS: dict[str, Encoding] = {}  # MSH-1 + MSH-2 + the field separator after it -> Encoding


def _encoding(segment: str) -> Encoding:
    """``Encoding.from_msh(segment)``, cached by the characters it reads (a handful per site)."""
    end = segment.find(segment[3:4] or "|", 4) if len(segment) > 3 else -1
    if end < 0:
        return Encoding.from_msh(segment)
    key = segment[: end + 1]
    enc = _ENCODINGS.get(key)
    if enc is None:
        enc = Encoding.from_msh(segment)  # raises ParseError for bad delimiters: never cached
        if len(_ENCODINGS) < 256:
            _ENCODINGS[key] = enc
    return enc


# ---------------------------------------------------------------------------------------------
# bytes -> text


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    charset: str  # the codec used
    warning: str = ""  # set when bytes did not decode cleanly with the declared/default charset


def _msh18_from_bytes(raw: bytes) -> str:
    """MSH-18 read from the raw bytes (MSH is ASCII in every charset HL7 allows on MLLP)."""
    start = raw.find(b"MSH")
    if start < 0 or len(raw) < start + 4:
        return ""
    end = raw.find(b"\r", start)
    if end < 0:
        end = len(raw)
    i = raw.find(b"\n", start, end)
    if i >= 0:
        end = i
    msh = raw[start:end]
    fs = msh[3:4]
    if not fs:  # "MSH" then a line break: no field separator, so no MSH-18
        return ""
    parts = msh.split(fs)
    # parts[0] = 'MSH', parts[1] = MSH-2, so MSH-n = parts[n-1]
    if len(parts) < 18:
        return ""
    rep = b"~"
    if len(parts[1]) >= 2:
        rep = parts[1][1:2]
    return parts[17].split(rep)[0].decode("ascii", "replace").strip()


def decode(raw: bytes, fallback: str = "cp1252") -> Decoded:
    """Decode message bytes by MSH-18, defaulting to UTF-8. Never raises.

    Without MSH-18, bytes that are valid UTF-8 (plain ASCII included) are read as UTF-8, others
    in ``fallback`` (a Python codec: the channel's ``fallback_charset``, Windows-1252 by default).

    Bytes that are not valid in the declared character set are replaced (U+FFFD) and a warning
    is returned; the raw bytes are always kept in the journal, so nothing is lost. Values that
    end with the truncation character (v2.7, MSH-2) add a "truncated" warning (see
    :func:`truncation_warning`).
    """
    decoded = _decode(raw, fallback)
    truncated = truncation_warning(decoded.text)
    if truncated:
        warning = f"{decoded.warning}; {truncated}" if decoded.warning else truncated
        return Decoded(decoded.text, decoded.charset, warning)
    return decoded


def _decode(raw: bytes, fallback: str = "cp1252") -> Decoded:
    declared = _msh18_from_bytes(raw)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
        declared = declared or "UNICODE UTF-8"
    if declared:
        codec = CHARSETS.get(declared.upper())
        if codec is None:
            text = raw.decode("utf-8", "replace")
            return Decoded(text, "utf-8", f"unknown character set {declared!r} in MSH-18; read as UTF-8")
        try:
            return Decoded(raw.decode(codec), codec)
        except UnicodeDecodeError as exc:
            # Common in practice: MSH-18 says ASCII or 8859/1 while the sender writes UTF-8.
            if codec != "utf-8":
                try:
                    return Decoded(
                        raw.decode("utf-8"),
                        "utf-8",
                        f"bytes are not {declared} (MSH-18) but valid UTF-8; read as UTF-8",
                    )
                except UnicodeDecodeError:
                    pass
            if codec == "ascii":  # "ASCII" with accented letters: the sender means Latin-1
                return Decoded(
                    raw.decode("cp1252", "replace"),
                    "cp1252",
                    f"byte {exc.start} is not ASCII (MSH-18); read as Windows-1252/ISO 8859-1",
                )
            return Decoded(
                raw.decode(codec, "replace"),
                codec,
                f"byte {exc.start} is not valid {declared} (MSH-18); replaced",
            )
    try:
        return Decoded(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        if fallback == "cp1252":
            return Decoded(
                raw.decode("cp1252", "replace"),
                "cp1252",
                "not valid UTF-8 and no MSH-18; read as Windows-1252/ISO 8859-1",
            )
        if fallback == "utf-8":
            return Decoded(
                raw.decode("utf-8", "replace"),
                "utf-8",
                f"byte {exc.start} is not valid UTF-8 and no MSH-18; replaced",
            )
        return Decoded(
            raw.decode(fallback, "replace"),
            fallback,
            f"not valid UTF-8 and no MSH-18; read as {fallback} (the channel's fallback)",
        )


# ---------------------------------------------------------------------------------------------
# the truncation character (v2.7 2.5.5.2)
#
# From v2.7 MSH-2 may carry a fifth character, the truncation character (``#``): a sender that
# had to cut a value marks it by ending the value with it; the character itself is data only
# when escaped (``\P\``). So a value (a field, repetition, component or subcomponent) that ends
# with it is stored without it, and the message is flagged "truncated" (journal warning, W in
# the ACK's ERR). MSH is left alone: MSH-2 holds the character itself.


@lru_cache(maxsize=32)
def _truncation_pattern(enc: Encoding) -> re.Pattern[str]:
    ends = "".join(re.escape(c) for c in (enc.component, enc.repetition, enc.subcomponent) if c)
    tail = rf"(?=[{ends}]|\Z)" if ends else r"\Z"
    return re.compile(re.escape(enc.truncation) + tail)


def _first_line(text: str) -> str:
    text = strip_leading(text)
    end = len(text)
    for sep in ("\r", "\n"):
        i = text.find(sep, 0, end)
        if i >= 0:
            end = i
    return text[:end]


def truncated_fields(text: str) -> list[str]:
    """``SEG-n`` of every field with a value that ends with the truncation character (none when
    MSH-2 declares no truncation character); cheap when the character does not occur."""
    first = _first_line(text)
    if len(first) < 8:
        return []
    try:
        enc = _encoding(first)
    except ParseError:
        return []
    t = enc.truncation
    if not t or text.find(t, text.find(first) + len(first)) < 0:
        return []
    pattern = _truncation_pattern(enc)
    out: list[str] = []
    for seg in split_segments(strip_leading(text)):
        if seg[:3] in ("MSH", "FHS", "BHS") or t not in seg:
            continue
        fields = seg.split(enc.field)
        for n, value in enumerate(fields[1:], 1):
            if t in value and pattern.search(value):
                where = f"{fields[0].strip()}-{n}"
                if where not in out:
                    out.append(where)
    return out


def truncation_warning(text: str) -> str:
    """The warning for a message with truncated values ("" if none): locations only."""
    where = truncated_fields(text)
    if not where:
        return ""
    shown = ", ".join(where[:10]) + (f" and {len(where) - 10} more" if len(where) > 10 else "")
    return (
        f"truncated: values at {shown} end with the truncation character (MSH-2, v2.7 "
        f"2.5.5.2); stored without it"
    )


def split_warnings(text: str | None) -> list[str]:
    """A journal row's ``warning`` text (character set, truncation) as a list of warnings."""
    return [w for w in re.split(r"; (?=truncated: )", text or "") if w]


def untruncate(value: str, enc: Encoding) -> str:
    """A raw (escaped) field without the truncation characters that end its values."""
    t = enc.truncation
    if not t or t not in value:
        return value
    return _truncation_pattern(enc).sub("", value)


# ---------------------------------------------------------------------------------------------
# segments and batches


def split_segments(text: str) -> list[str]:
    """Split on CR, LF or CRLF; drop blank lines.

    A line that does not start with a segment id is a continuation of the previous segment (a
    sender that put a bare line break inside a text field) and is re-joined to it with LF.
    """
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    out: list[str] = []
    ids = _SEGMENT_IDS
    for line in text.split("\r"):
        if not line.strip():
            continue
        if out:
            head = line[:3]
            ok = ids.get(head)
            if ok is None:
                ok = SEGMENT_ID.match(head) is not None
                if len(ids) < 4096:
                    ids[head] = ok
            if not ok:
                out[-1] += "\n" + line
                continue
        out.append(line)
    return out


_SEGMENT_IDS: dict[str, bool] = {}  # line[:3] -> is it a segment id (memo of SEGMENT_ID)


def strip_leading(text: str) -> str:
    """Drop leading whitespace, NULs and a BOM some senders put before MSH."""
    return text.lstrip("\ufeff\x00 \t\r\n")


BATCH_HEADERS = ("FHS", "BHS")
BATCH_TRAILERS = ("BTS", "FTS")


def is_batch(text: str) -> bool:
    return strip_leading(text)[:3] in BATCH_HEADERS


def split_messages(text: str) -> list[str]:
    """Split text holding one message, several, or an FHS/BHS batch into message texts (CR-joined).

    Segments before the first MSH other than batch headers, and batch headers/trailers, are not
    part of any message. Raises ParseError if there is no MSH at all (e.g. a batch of bare
    segments).
    """
    messages: list[list[str]] = []
    stray: list[str] = []
    for seg in split_segments(strip_leading(text)):
        sid = seg[:3]
        if sid == "MSH":
            messages.append([seg])
        elif sid in BATCH_HEADERS or sid in BATCH_TRAILERS:
            continue
        elif messages:
            messages[-1].append(seg)
        else:
            stray.append(sid)
    if not messages:
        raise ParseError("no MSH segment found", Location("MSH"))
    if stray:
        raise ParseError(f"segment {stray[0]} before the first MSH", Location(stray[0]))
    return ["\r".join(m) for m in messages]


def has_several_messages(text: str) -> bool:
    """Whether a frame without FHS/BHS holds more than one MSH (cheap: two ``str.find``)."""
    return text.find("\rMSH", 4) >= 0 or text.find("\nMSH", 4) >= 0


@dataclass(frozen=True, slots=True)
class CountProblem:
    """A batch trailer whose count disagrees with what the frame holds (HL7 v2.5.1 2.10.3)."""

    location: Location  # BTS-1 (which BTS: the sequence) or FTS-1
    declared: str
    counted: int

    @property
    def text(self) -> str:
        what = "messages in its batch" if self.location.segment == "BTS" else "batches in the file"
        return (
            f"{self.location.segment}-1 says {self.declared[:20]!r} but the frame holds {self.counted} {what}"
        )


def batch_count_problems(text: str) -> list[CountProblem]:
    """BTS-1 (batch message count) against the MSH segments since its BHS, and FTS-1 (file
    batch count) against the BHS segments of the file. An empty count is not checked (both
    fields are optional); one that is not a whole number is a problem."""
    out: list[CountProblem] = []
    in_batch = batches = bts_seq = 0
    for seg in split_segments(strip_leading(text)):
        sid = seg[:3]
        if sid == "MSH":
            in_batch += 1
        elif sid == "BHS":
            batches += 1
            in_batch = 0
        elif sid in ("BTS", "FTS"):
            counted = in_batch if sid == "BTS" else batches
            if sid == "BTS":
                bts_seq += 1
                in_batch = 0
            fs = seg[3:4]
            declared = seg.split(fs)[1].strip() if fs and len(seg.split(fs)) > 1 else ""
            if declared and not (declared.isdecimal() and declared.isascii() and int(declared) == counted):
                out.append(CountProblem(Location(sid, bts_seq if sid == "BTS" else 1, 1), declared, counted))
    return out


def batch_control_id(text: str) -> str:
    """BHS-11 (batch control id), else FHS-11, else "" — to name a batch in the journal."""
    found = {}
    for seg in split_segments(strip_leading(text))[:2]:
        if seg[:3] in BATCH_HEADERS and len(seg) > 3:
            f = seg.split(seg[3])
            if len(f) > 10 and f[10].strip():
                found[seg[:3]] = f[10].strip()
    return found.get("BHS") or found.get("FHS") or ""


def split_message_bytes(raw: bytes) -> list[bytes]:
    """The exact bytes of each message in a batch or multi-message frame, cut at the same places
    as :func:`split_messages` (each MSH starts a message; batch headers/trailers end one).

    Used to keep every message's raw bytes as received, even bytes that did not decode. Segment
    separators (CR, LF) are ASCII in every charset MSH-18 allows on MLLP, so cutting bytes is safe.
    """
    out: list[bytes] = []
    start = None
    pos = 0
    n = len(raw)
    while pos < n:
        cr, lf = raw.find(b"\r", pos), raw.find(b"\n", pos)
        ends = [i for i in (cr, lf) if i >= 0]
        end = min(ends) if ends else n
        ident = raw[pos : min(end, pos + 8)].lstrip(b"\xef\xbb\xbf\x00 \t")[:3]
        if ident == b"MSH":
            if start is not None:
                out.append(raw[start:pos])
            start = pos
        elif ident in (b"FHS", b"BHS", b"BTS", b"FTS"):
            if start is not None:
                out.append(raw[start:pos])
                start = None
        pos = end + 1
    if start is not None:
        out.append(raw[start:])
    return out


# ---------------------------------------------------------------------------------------------
# escapes

_FORMATTING = {
    ".br": "\n",
    ".sp": "\n",
    ".fi": "",
    ".nf": "",
    ".in": "",
    ".ti": "",
    ".sk": "",
    ".ce": "",
    "H": "",
    "N": "",
}


@lru_cache(maxsize=64)
def _escape_pattern(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(e + r"([^" + e + r"\r]{1,64}?)" + e)


def unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Resolve HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh..\\ and formatting.

    Formatting commands become plain text (``\\.br\\`` a line break; highlighting removed);
    character-set switches (``\\C..\\``, ``\\M..\\``) are dropped; unknown sequences are kept as they
    were, so nothing is silently lost.
    """
    esc = enc.escape
    if not esc or esc not in value:
        return value
    table = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": esc,
        "P": enc.truncation,
    }

    def sub(m: re.Match[str]) -> str:
        body = m.group(1)
        if body in table and table[body]:
            return table[body]
        head = body[:1]
        if head == "X" and len(body) > 1:
            try:
                data = bytes.fromhex(body[1:])
            except ValueError:
                return m.group(0)
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if head in ("C", "M") and len(body) > 1:
            return ""
        key = body.split()[0] if body.startswith(".") else body
        key = key[:3] if key.startswith(".") else key
        if key in _FORMATTING:
            if key in (".sp", ".sk", ".in", ".ti"):
                arg = body[3:].strip()
                if key == ".sp":
                    n = int(arg) if arg.isdigit() else 1
                    return "\n" * max(n, 1)
                return ""
            return _FORMATTING[key]
        return m.group(0)

    return _escape_pattern(esc).sub(sub, value)


def escape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Escape delimiters in a value so it can be placed in a field."""
    esc = enc.escape or "\\"
    out = value.replace(esc, f"{esc}E{esc}")
    for ch, code in (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.subcomponent, "T"),
        (enc.repetition, "R"),
        (enc.truncation, "P"),
    ):
        if ch:
            out = out.replace(ch, f"{esc}{code}{esc}")
    out = out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{esc}.br{esc}")
    return out


# ---------------------------------------------------------------------------------------------
# the header: what the ACK and the journal need, read cheaply


@dataclass(frozen=True, slots=True)
class Header:
    encoding: Encoding
    msh: tuple[str, ...]  # raw MSH fields; msh[n] is MSH-n (msh[0] == 'MSH')
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_time: str
    message_code: str
    trigger: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str

    @property
    def message_type(self) -> str:
        """``ADT^A01`` style, the way analysts write it."""
        return f"{self.message_code}^{self.trigger}" if self.trigger else self.message_code

    @property
    def enhanced(self) -> bool:
        """Enhanced acknowledgement mode: the sender valued MSH-15 or MSH-16."""
        return bool(self.accept_ack_type or self.application_ack_type)


def msh_fields(segment: str, enc: Encoding) -> list[str]:
    """Split an MSH segment so that index n is MSH-n (MSH-1 is the field separator itself)."""
    parts = segment.split(enc.field)
    return [parts[0], enc.field] + parts[1:]


def _component(value: str, enc: Encoding, n: int = 1) -> str:
    if enc.component:
        parts = value.split(enc.component)
        value = parts[n - 1] if len(parts) >= n else ""
    elif n > 1:
        return ""
    if enc.repetition and enc.repetition in value:
        value = value.split(enc.repetition)[0]
    return value


def no_msh(text: str) -> ParseError:
    """The error for a message that does not start with MSH: says whether there is one at all."""
    if "MSH" not in text:
        return ParseError("no MSH segment found: a message starts with its MSH segment", Location("MSH"))
    first = strip_leading(text)[:3]
    shown = first if SEGMENT_ID.match(first) else "text"
    return ParseError(f"message does not start with MSH ({shown} before the MSH segment)", Location("MSH"))


def header_from_text(text: str) -> Header:
    """Read the header of a decoded message whose first segment is MSH."""
    text = strip_leading(text)
    end = text.find("\r")
    if end < 0:
        end = len(text)
    i = text.find("\n", 0, end)
    if i >= 0:
        end = i
    segment = text[:end]
    if not segment.startswith("MSH"):
        raise no_msh(text)
    enc = _encoding(segment)
    fs = enc.field
    f = segment.split(fs)
    f.insert(1, fs)  # msh_fields: index n is MSH-n
    if len(f) < 22:
        f += [""] * (22 - len(f))
    cs = enc.component
    comps = f[9].split(cs) if cs else [f[9]]
    comps += ["", "", ""]
    esc = enc.escape
    rs = enc.repetition

    def uv(v: str) -> str:
        return unescape(v, enc).strip() if esc and esc in v else v.strip()

    def first(v: str) -> str:  # _component(v, enc): component 1 of repetition 1
        if cs:
            v = v.split(cs)[0]
        if rs and rs in v:
            v = v.split(rs)[0]
        return v.strip()

    return Header(
        enc,
        tuple(f),
        uv(f[3]),
        uv(f[4]),
        uv(f[5]),
        uv(f[6]),
        first(f[7]),
        comps[0].strip().upper(),
        comps[1].strip().upper(),
        comps[2].strip().upper(),
        uv(f[10]),
        first(f[11]),
        first(f[12]),
        f[15].strip().upper(),
        f[16].strip().upper(),
        f[18].split(rs)[0].strip() if rs else f[18].strip(),
    )


def find_segments(text: str, name: str) -> list[str]:
    """All segments with this id, without splitting the whole message (cheap for one id)."""
    out = []
    norm = text if "\n" not in text else text.replace("\r\n", "\r").replace("\n", "\r")
    if norm.startswith(name):
        end = norm.find("\r")
        out.append(norm if end < 0 else norm[:end])
    needle = "\r" + name
    i = norm.find(needle)
    while i >= 0:
        end = norm.find("\r", i + 1)
        out.append(norm[i + 1 :] if end < 0 else norm[i + 1 : end])
        i = norm.find(needle, i + 1)
    return [s for s in out if len(s) == 3 or not s[3].isalnum()]


# ---------------------------------------------------------------------------------------------
# full parse, for mapping


@dataclass(slots=True)
class Segment:
    """One segment. ``fields[n]`` is field n (``fields[0]`` is the segment id), raw and escaped."""

    name: str
    fields: list[str]
    sequence: int = 1  # 1-based occurrence of this segment id in the message
    index: int = 0  # position in the message

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""


@dataclass(slots=True)
class Message:
    encoding: Encoding
    segments: list[Segment]
    text: str = ""
    _by_name: dict[str, list[Segment]] = field(default_factory=dict)

    @property
    def header(self) -> Header:
        return header_from_text(self.text)

    def all(self, name: str) -> list[Segment]:
        return self._by_name.get(name, [])

    def first(self, name: str) -> Segment | None:
        segs = self._by_name.get(name)
        return segs[0] if segs else None

    # -- field access: raw -> repetitions -> components -> subcomponents --------------------

    def repetitions(self, raw: str, segment: str = "", fieldno: int = 0) -> list[str]:
        if segment == "MSH" and fieldno in (1, 2):
            return [raw]
        if not self.encoding.repetition:
            return [raw]
        return raw.split(self.encoding.repetition)

    def components(self, raw: str) -> list[str]:
        return raw.split(self.encoding.component) if self.encoding.component else [raw]

    def subcomponents(self, raw: str) -> list[str]:
        return raw.split(self.encoding.subcomponent) if self.encoding.subcomponent else [raw]

    def value(
        self,
        segment: str,
        fieldno: int,
        repetition: int = 1,
        component: int = 1,
        subcomponent: int = 1,
        sequence: int = 1,
    ) -> str:
        """One unescaped value, "" when absent. All indexes are 1-based, as HL7 writes them."""
        segs = self.all(segment)
        if len(segs) < sequence:
            return ""
        raw = segs[sequence - 1].raw(fieldno)
        if segment == "MSH" and fieldno in (1, 2):
            return raw
        reps = self.repetitions(raw)
        if len(reps) < repetition:
            return ""
        comps = self.components(reps[repetition - 1])
        if len(comps) < component:
            return ""
        subs = self.subcomponents(comps[component - 1])
        if len(subs) < subcomponent:
            return ""
        return unescape(subs[subcomponent - 1], self.encoding)

    def unescape(self, value: str) -> str:
        return unescape(value, self.encoding)


def parse(text: str) -> Message:
    """Parse one decoded message (CR, LF or CRLF separated) into segments of raw fields."""
    text = strip_leading(text)
    segments = split_segments(text)
    if not segments or not segments[0].startswith("MSH"):
        raise ParseError("message does not start with MSH", Location("MSH"))
    enc = _encoding(segments[0])
    fs = enc.field
    trunc = enc.truncation
    out: list[Segment] = []
    by_name: dict[str, list[Segment]] = {}
    for i, seg in enumerate(segments):
        if seg.startswith("MSH"):
            fields = seg.split(fs)
            fields.insert(1, fs)  # msh_fields: MSH-1 is the field separator itself
            name = "MSH"
        else:
            fields = seg.split(fs)
            name = fields[0].strip()
            if trunc and trunc in seg:  # v2.7: a value ending with it was cut; drop the mark
                fields[1:] = [untruncate(f, enc) for f in fields[1:]]
        lst = by_name.get(name)
        if lst is None:
            lst = by_name[name] = []
        s = Segment(name, fields, len(lst) + 1, i)
        lst.append(s)
        out.append(s)
    return Message(enc, out, "\r".join(segments), by_name)


def parse_bytes(raw: bytes) -> Message:
    return parse(decode(raw).text)
