"""Document content: read it from OBX-5, and keep it in a store addressed by SHA-256.

:func:`extract_content` is pure (message in, :class:`records.DocumentContent` parts out):

* TX / FT / ST / CF lines (and their OBX-5 repetitions) are joined with newlines into one text
  part, in message order. FT (and CF's formatted text: CF-2, or CF-1 when CF-2 is empty) is
  rendered by ``formatted_text`` (v2.5.1 2.7.6: line breaks, spacing, indents, centring, fill);
  TX/ST have their escapes resolved (``message.unescape``). The text as sent (escapes kept) is
  the part's ``raw_text`` when it differs.
* ED (source application ^ type of data ^ data subtype ^ encoding ^ data) becomes one binary part:
  Base64 (whitespace and line-break escapes ignored, missing ``=`` padding tolerated), Hex, or
  A/none (the text itself, UTF-8). The media type comes from the subtype (``PDF`` ->
  ``application/pdf``; a subtype that is already a MIME type, e.g. ``text/html``, is used as
  sent) or from the type of data (``AP``/``IM``/``AU``/``TEXT``). Data that is not valid for its
  encoding is a :class:`errors.DataError` at the OBX-5.5 location: we never store a document whose
  content we could not read. The payload itself is not validated (HTML that is not HTML is stored
  as sent, with the media type the sender declared).
* RP (pointer ^ application ^ type ^ subtype) becomes a reference part: the pointer is stored,
  not fetched.
* OBX with result status D (deleted) or W (wrong) contributes nothing.

:class:`ContentStore` keeps bytes by their SHA-256, once: under ``content_dir/ab/cdef...`` (the
embedded set-up, ``./var/content``) or in the ``document_blobs`` table when no directory is set.
Anything larger than ``max_bytes`` is ``PermanentError(reason="content_too_large")``.

:func:`store_dir` chooses: the directory only where one machine owns the database (SQLite in its
own ``--var``); with PostgreSQL (several engine machines on one database) or a database file
elsewhere, the content goes with the database, so every machine serves every document — unless
a shared directory is configured (``run --content-dir``, e.g. a mount all machines see).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from interface.hl7 import errors
from interface.hl7.errors import DataError, Location, PermanentError
from interface.hl7.formatted_text import FormattedText
from interface.hl7.message import Message, unescape
from interface.mapping.records import DocumentContent

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

TEXT_TYPES = ("TX", "FT", "ST", "CF")

# HL7 table 0291 (subtype of referenced data) and common sender values -> media types.
SUBTYPES = {
    "PDF": "application/pdf",
    "RTF": "text/rtf",
    "HTML": "text/html",
    "HTM": "text/html",
    "XML": "application/xml",
    "SGML": "text/sgml",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "TIF": "image/tiff",
    "BMP": "image/bmp",
    "DICOM": "application/dicom",
    "OCTET-STREAM": "application/octet-stream",
    "X-HL7-CDA-LEVEL-ONE": "application/x-hl7-cda-level-one+xml",
    "DOC": "application/msword",
    "MSWORD": "application/msword",
    "DOCX": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "PLAIN": "text/plain",
    "TEXT": "text/plain",
    "TXT": "text/plain",
    "BASIC": "audio/basic",
    "WAV": "audio/wav",
}
# HL7 table 0191 (type of referenced data) -> top-level media type.
DATA_TYPES = {
    "AP": "application",
    "IM": "image",
    "AU": "audio",
    "TEXT": "text",
    "TX": "text",
    "SI": "application",
    "SD": "application",
    "NS": "application",
    "MULTIPART": "multipart",
}

_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+$")
_WS = re.compile(r"\s+")


def media_type(type_of_data: str, subtype: str) -> str:
    """The media type for an ED/RP type of data (table 0191) and subtype (table 0291)."""
    sub = subtype.strip()
    if _MIME.match(sub):
        return sub.lower()
    known = SUBTYPES.get(sub.upper())
    if known:
        return known
    top = DATA_TYPES.get(type_of_data.strip().upper())
    if top == "text" and not sub:
        return "text/plain"
    if top and sub and re.match(r"^[\w.+-]+$", sub):
        return f"{top}/{sub.lower()}"
    return "application/octet-stream"


def decode_data(data: str, encoding: str, where: Location) -> bytes:
    """ED-5 data (already unescaped) decoded per ED-4 (table 0299). DataError when it is not valid."""
    enc = encoding.strip().upper()
    if enc in ("BASE64", "B64"):
        if data and not len(data) % 4:
            # what senders send: one line, padded. Decoded as it is (a 100 KB document pays
            # for no whitespace scan and no copy); anything else takes the careful way below.
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                pass
        compact = _WS.sub("", data)
        if not compact:
            raise DataError("ED data is empty", where)
        if len(compact) % 4:
            compact += "=" * (-len(compact) % 4)  # some senders drop the padding
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise DataError("ED data is not valid Base64", where) from None
    if enc in ("HEX", "X"):
        try:
            return bytes.fromhex(_WS.sub("", data))
        except ValueError:
            raise DataError("ED data is not valid hexadecimal", where) from None
    if enc in ("A", ""):
        return data.encode("utf-8")
    raise DataError(
        f"unsupported ED encoding {encoding!r}", Location(where.segment, where.sequence, where.field, None, 4)
    )


def _estimate_size(data_raw: str, encoding: str) -> int:
    enc = encoding.strip().upper()
    if enc in ("BASE64", "B64"):
        return len(data_raw) * 3 // 4
    if enc in ("HEX", "X"):
        return len(data_raw) // 2
    return len(data_raw)


def too_large(size: int, max_bytes: int, where: Location | None = None) -> PermanentError:
    return PermanentError(
        f"document content of {size} bytes exceeds the limit of {max_bytes} bytes",
        where,
        code=errors.VALUE_TOO_LONG,
        reason="content_too_large",
    )


def extract_content(message: Message, *, max_bytes: int | None = None) -> list[DocumentContent]:
    """Every content part of the message's OBX segments, in order (see the module docstring).

    Consecutive and non-consecutive text lines form one text part, placed where the first text
    line was. Raises DataError (undecodable ED) or PermanentError content_too_large when a part
    (estimated before decoding, so a huge payload is refused without decoding it) exceeds
    ``max_bytes``.
    """
    enc = message.encoding
    parts: list[DocumentContent] = []
    lines: list[str] | None = None
    raw_lines: list[str] = []
    ft = FormattedText(enc)  # one document: margin and fill mode carry from line to line
    for seg in message.all("OBX"):
        value_type = message.components(seg.raw(2))[0].strip().upper()
        status = seg.raw(11).strip().upper()
        if status in ("D", "W"):
            continue
        raw5 = seg.raw(5)
        where = Location("OBX", seg.sequence, 5)
        if value_type in TEXT_TYPES:
            if lines is None:
                lines = []
                parts.append(DocumentContent(kind="text", media_type="text/plain", text=None))
            for rep in message.repetitions(raw5):
                if value_type == "CF":
                    comps = message.components(rep) + [""]
                    rep = comps[1] if comps[1] else comps[0]
                # TX/FT/ST have no components: a literal component separator is text that a
                # sender's word processor typed, so it is kept.
                raw_lines.append(rep)
                if value_type in ("FT", "CF"):
                    ft.feed(rep)
                    lines.append(ft.take())
                else:
                    lines.append(unescape(rep, enc))
        elif value_type == "ED":
            parts.append(_ed_part(message, raw5, where, max_bytes))
        elif value_type == "RP":
            comps = message.components(message.repetitions(raw5)[0]) + ["", "", "", ""]
            pointer = unescape(comps[0], enc).strip()
            if not pointer:
                continue
            app = unescape(comps[1].split(enc.subcomponent)[0] if enc.subcomponent else comps[1], enc)
            ref = pointer if not app.strip() else f"{app.strip()}:{pointer}"
            parts.append(
                DocumentContent(kind="reference", media_type=media_type(comps[2], comps[3]), reference=ref)
            )
        # other value types (NM, CE, DT...) are observations about the document, not its content
    if lines is not None:
        text = "\n".join(lines)
        raw = "\n".join(raw_lines)
        for p in parts:
            if p.kind == "text" and p.text is None:
                p.text = text
                p.raw_text = raw if raw != text else None
        size = len(text.encode("utf-8"))
        if max_bytes is not None and size > max_bytes:
            raise too_large(size, max_bytes, Location("OBX", 1, 5))
    return parts


def _ed_part(message: Message, raw5: str, where: Location, max_bytes: int | None) -> DocumentContent:
    enc = message.encoding
    reps = message.repetitions(raw5)
    comps = message.components(reps[0]) + ["", "", "", "", ""]
    # Some senders split a long ED-5 over further OBX-5 repetitions holding only data.
    data_raw = comps[4] + "".join(r for r in reps[1:] if not enc.component or enc.component not in r)
    where5 = Location(where.segment, where.sequence, 5, None, 5)
    if max_bytes is not None:
        estimate = _estimate_size(data_raw, comps[3])
        if estimate > max_bytes:
            raise too_large(estimate, max_bytes, where5)
    data = decode_data(unescape(data_raw, enc), comps[3], where5)
    if max_bytes is not None and len(data) > max_bytes:
        raise too_large(len(data), max_bytes, where5)
    return DocumentContent(kind="binary", media_type=media_type(comps[1], comps[2]), data=data)


def part_bytes(part: DocumentContent) -> bytes | None:
    """The bytes a part stores (text as UTF-8), None for a reference."""
    if part.kind == "text":
        return (part.text or "").encode("utf-8")
    if part.kind == "binary":
        return part.data or b""
    return None


def store_dir(db_url: str, var_dir: Path, shared: Path | None = None) -> Path | None:
    """Where document content is kept: ``shared`` if configured; ``var_dir/content`` when the
    database is a SQLite file inside ``var_dir`` (the embedded set-up: one machine); else None,
    the database store (``document_blobs``, bytea, one row per SHA-256), shared by every engine
    process and machine on that database."""
    if shared is not None:
        return Path(shared)
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    db_file = url.database or ""
    if not db_file or db_file == ":memory:":
        return Path(var_dir) / "content"
    try:
        Path(db_file).resolve().relative_to(Path(var_dir).resolve())
    except ValueError:
        return None  # a database file outside this machine's var: others may share it
    return Path(var_dir) / "content"


def import_dir(conn: Connection, directory: Path, now: datetime | None = None) -> int:
    """Copy a directory store's blobs (``ab/cdef...`` files) into the database store, each
    checked against its name; returns how many were copied (already there: skipped). For
    content an engine kept under ``var/content`` before it was shared through the database."""
    store = ContentStore(None, max_bytes=1 << 62)
    n = 0
    for path in sorted(Path(directory).glob("[0-9a-f][0-9a-f]/*")):
        sha = path.parent.name + path.name
        if not path.is_file() or not re.fullmatch(r"[0-9a-f]{64}", sha):
            continue
        data = path.read_bytes()
        if sha256_hex(data) != sha:
            raise ValueError(f"{path}: content does not match its SHA-256 name")
        if store.get(conn, sha) is None:
            store.put(conn, data, now)
            n += 1
    return n


# -- blobs of a transaction: written at once, made durable together just before its COMMIT -----
#
# A group commit files a document per message; fsyncing each blob as it is written cost one disk
# flush per document, under the SQLite write lock (a third of the journal writer's time for 100 KB
# MDM documents, #21). So within a transaction a blob is written to its temporary file only, and
# the connection's ``commit`` event (which runs before the COMMIT) fsyncs every one of them — in
# parallel: the filesystem folds concurrent fsyncs into one journal commit — and renames each into
# place. A COMMIT therefore never references a blob that is not durable; a failed fsync fails the
# COMMIT (nothing is ACKed); a rollback removes the temporary files.

_PENDING_KEY = "interface_content_pending"
_sync_pool = None


class _Pending:
    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # sha -> temporary file (renamed to path_for(sha) at commit)


def _pending(conn: Connection | None, *, create: bool) -> _Pending | None:
    """The blobs written in ``conn``'s current transaction (None outside a transaction: then a
    blob is written, fsynced and renamed at once, as it always was)."""
    if conn is None or not isinstance(conn, Connection) or not conn.in_transaction():
        return None
    pending = conn.info.get(_PENDING_KEY)
    if pending is None and create:
        _listen(conn.engine)
        pending = conn.info[_PENDING_KEY] = _Pending()
    return pending


def _listen(engine) -> None:
    from sqlalchemy import event

    if not event.contains(engine, "commit", _on_commit):
        event.listen(engine, "commit", _on_commit)
        event.listen(engine, "rollback", _on_rollback)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _on_commit(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING_KEY, None)
    if not pending or not pending.files:
        return
    global _sync_pool
    tmps = list(pending.files.items())
    try:
        if len(tmps) == 1:
            _fsync(tmps[0][1])
        else:
            if _sync_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _sync_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="content-fsync")
            list(_sync_pool.map(_fsync, [t for _, t in tmps]))  # raises the first OSError
        for sha, tmp in tmps:
            os.replace(tmp, Path(tmp).parent / sha[2:])
    except BaseException:
        _discard(tmps)
        raise


def _on_rollback(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING_KEY, None)
    if pending:
        _discard(list(pending.files.items()))


def _discard(tmps: list[tuple[str, str]]) -> None:
    for _, tmp in tmps:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ContentStore:
    """Bytes addressed by SHA-256, stored once. Directory backend when ``content_dir`` is set,
    else the ``document_blobs`` table (written in the caller's transaction).

    Directory writes are atomic (temporary file, fsync, rename). In a transaction the file is
    written at ``put`` and the transaction's blobs are fsynced together and renamed into place
    just before its COMMIT (see "blobs of a transaction" below); outside one, at once. A failed
    commit may leave an unreferenced blob, never a referenced one missing.
    """

    def __init__(self, content_dir: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.content_dir = Path(content_dir) if content_dir is not None else None
        self.max_bytes = max_bytes

    def path_for(self, sha: str) -> Path:
        assert self.content_dir is not None
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError("not a SHA-256 hex digest")
        return self.content_dir / sha[:2] / sha[2:]

    def put(self, conn: Connection, data: bytes, now: datetime | None = None) -> str:
        """Store ``data`` (if not already there) and return its SHA-256 hex digest."""
        if len(data) > self.max_bytes:
            raise too_large(len(data), self.max_bytes)
        sha = sha256_hex(data)
        if self.content_dir is not None:
            self._put_file(sha, data, conn)
        else:
            self._put_row(conn, sha, data, now or datetime.now(timezone.utc))
        return sha

    def get(self, conn: Connection, sha: str) -> bytes | None:
        """The bytes stored under ``sha``, or None if this store does not hold them."""
        if self.content_dir is not None:
            pending = _pending(conn, create=False)
            if pending is not None and sha in pending.files:
                return Path(pending.files[sha]).read_bytes()  # put in this transaction
            try:
                return self.path_for(sha).read_bytes()
            except (FileNotFoundError, ValueError):
                pass
        # Also look in the table: content stored before a switch to the directory backend.
        from interface.store.document_schema import document_blobs

        row = conn.execute(select(document_blobs.c.data).where(document_blobs.c.sha256 == sha)).first()
        return bytes(row[0]) if row else None

    def _put_file(self, sha: str, data: bytes, conn: Connection | None = None) -> None:
        path = self.path_for(sha)
        pending = _pending(conn, create=True)
        if path.exists() or (pending is not None and sha in pending.files):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if pending is None:
                    fh.flush()
                    os.fsync(fh.fileno())
            if pending is None:
                os.replace(tmp, path)
            else:
                pending.files[sha] = tmp
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def _put_row(self, conn: Connection, sha: str, data: bytes, now: datetime) -> None:
        from interface.store.document_schema import document_blobs

        values = {"sha256": sha, "size": len(data), "data": data, "created_at": now}
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        # Two workers storing the same bytes concurrently: the second insert is a no-op.
        conn.execute(
            insert(document_blobs).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
        )
