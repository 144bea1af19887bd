"""MLLP framing: ``0x0B message 0x1C 0x0D``, as a pure byte-fed decoder (no sockets).

Tolerant of what real senders do: bytes (whitespace, newlines, stray garbage) before the start
block are skipped; a frame ended by ``0x1C`` without the final ``0x0D`` is accepted; any number of
frames may come in one chunk and one frame may come over many chunks.

A start block inside an unfinished frame restarts the frame (the sender abandoned the old one).

Memory is bounded: a frame that grows past ``max_frame`` raises :class:`FrameTooLarge` and the
decoder keeps nothing of it (the caller closes the connection). Garbage outside a frame is
discarded as it arrives.
"""

from __future__ import annotations

from interface.hl7.errors import FrameTooLarge

START = b"\x0b"
END = b"\x1c"
CR = b"\x0d"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP envelope."""
    return START + message + END + CR


class FrameDecoder:
    """Feed bytes, get complete frames (envelope stripped) in order."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False
        self._pending_cr = False  # saw END at the end of a chunk; swallow a following CR
        self.discarded = 0  # bytes skipped outside frames (for diagnostics)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """A start block was read and its end block not yet (a frame is partial)."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        pos = 0
        n = len(data)
        if self._pending_cr and n:
            self._pending_cr = False
            if data[0:1] == CR:
                pos = 1
        while pos < n:
            if not self._in_frame:
                start = data.find(START, pos)
                if start < 0:
                    self.discarded += n - pos
                    break
                self.discarded += start - pos
                pos = start + 1
                self._in_frame = True
                self._buf.clear()
                continue
            end = data.find(END, pos)
            restart = data.find(START, pos, n if end < 0 else end)
            if restart >= 0:
                # A new start block before the end block: the sender gave up on the old frame
                # (it reconnected or restarted mid-message). Drop the partial and start again.
                self.discarded += len(self._buf) + (restart - pos)
                self._buf.clear()
                pos = restart + 1
                continue
            if end < 0:
                self._buf += data[pos:]
                if len(self._buf) > self.max_frame:
                    self._reset()
                    raise FrameTooLarge(f"frame larger than {self.max_frame} bytes")
                break
            self._buf += data[pos:end]
            if len(self._buf) > self.max_frame:
                self._reset()
                raise FrameTooLarge(f"frame larger than {self.max_frame} bytes")
            frames.append(bytes(self._buf))
            self._buf.clear()
            self._in_frame = False
            pos = end + 1
            if pos < n:
                if data[pos : pos + 1] == CR:
                    pos += 1
            else:
                self._pending_cr = True
        return frames

    def _reset(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
