"""MLLP framing fed bytes, no sockets: every split of a stream gives the same frames (P1)."""

from __future__ import annotations

import pytest

from interface.hl7.errors import FrameTooLarge, FramingError
from interface.hl7.framing import FrameDecoder, frame

M1 = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||100^^^H^MR\r"
M2 = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|2|P|2.5\rPID|1||200^^^H^MR\r"
M3 = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A03|3|P|2.5\r"

STREAMS = {
    "plain": (frame(M1) + frame(M2) + frame(M3), [M1, M2, M3]),
    "leading whitespace": (b"\r\n \t\n" + frame(M1) + b"\n\n" + frame(M2), [M1, M2]),
    "missing final CR": (b"\x0b" + M1 + b"\x1c" + b"\x0b" + M2 + b"\x1c", [M1, M2]),
    "mixed enders": (b"\x0b" + M1 + b"\x1c" + frame(M2) + b"\x0b" + M3 + b"\x1c\r", [M1, M2, M3]),
    "garbage between": (b"junk" + frame(M1) + b"\r\nmore junk\n" + frame(M2), [M1, M2]),
    "lf only message": (frame(M1.replace(b"\r", b"\n")), [M1.replace(b"\r", b"\n")]),
}


def feed_chunks(data: bytes, sizes, max_frame: int = 1 << 20) -> list[bytes]:
    dec = FrameDecoder(max_frame)
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.extend(dec.feed(data[pos : pos + n]))
        pos += n
        i += 1
    return out


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_chunk_size_gives_same_frames(name):
    """Feeding the stream in chunks of every size 1..len gives the same frames in the same order."""
    data, expected = STREAMS[name]
    for size in range(1, len(data) + 1):
        assert feed_chunks(data, [size]) == expected, size


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_two_way_split(name):
    """Every single cut point, and every cut point pair around the envelope bytes."""
    data, expected = STREAMS[name]
    for cut in range(len(data) + 1):
        dec = FrameDecoder()
        got = dec.feed(data[:cut]) + dec.feed(data[cut:])
        assert got == expected, cut
    special = [i for i, b in enumerate(data) if b in (0x0B, 0x1C, 0x0D)]
    for a in special:
        for b in special:
            if a < b:
                dec = FrameDecoder()
                got = dec.feed(data[:a]) + dec.feed(data[a:b]) + dec.feed(data[b:])
                assert got == expected, (a, b)


def test_irregular_chunks_and_empty_feeds():
    """Irregular chunk sizes and empty feeds change nothing."""
    data, expected = STREAMS["mixed enders"]
    assert feed_chunks(data, [1, 7, 2, 13, 3]) == expected
    dec = FrameDecoder()
    got = []
    for b in data:
        got += dec.feed(b"")
        got += dec.feed(bytes([b]))
    assert got == expected


def test_several_messages_in_one_read():
    """Three frames in one chunk come out as three frames, nothing buffered after."""
    dec = FrameDecoder()
    assert dec.feed(frame(M1) + frame(M2) + frame(M3)) == [M1, M2, M3]
    assert dec.buffered == 0


def test_cr_after_end_block_in_next_chunk_is_swallowed():
    """END at the end of a chunk, its CR at the start of the next: the CR is not garbage."""
    dec = FrameDecoder()
    assert dec.feed(b"\x0b" + M1 + b"\x1c") == [M1]
    assert dec.feed(b"\r") == []
    assert dec.discarded == 0


def test_garbage_counted_and_not_kept():
    """Bytes outside frames are discarded as they come (counted, not buffered)."""
    dec = FrameDecoder()
    assert dec.feed(b"x" * 5000) == []
    assert dec.buffered == 0
    assert dec.discarded == 5000


def test_start_block_inside_frame_restarts():
    """A start block inside an unfinished frame abandons the old partial frame."""
    dec = FrameDecoder()
    assert dec.feed(b"\x0bMSH|partial") == []
    assert dec.feed(b"\x0b" + M1 + b"\x1c\r") == [M1]
    dec = FrameDecoder()
    assert dec.feed(b"\x0bMSH|partial\x0b" + M2 + b"\x1c\r") == [M2]


def test_unfinished_frame_is_buffered_not_emitted():
    dec = FrameDecoder()
    assert dec.feed(b"\x0b" + M1) == []
    assert dec.buffered == len(M1)
    assert dec.feed(b"\x1c\r") == [M1]


def test_frame_too_large_raises_declared_error_bounded():
    """A frame past max_frame raises FrameTooLarge (a FramingError) and keeps nothing."""
    dec = FrameDecoder(max_frame=1024)
    dec.feed(b"\x0b")
    with pytest.raises(FrameTooLarge):
        for _ in range(100):
            dec.feed(b"A" * 100)
            assert dec.buffered <= 1024
    assert dec.buffered == 0
    assert issubclass(FrameTooLarge, FramingError)


def test_frame_too_large_in_one_chunk_with_end():
    """Even a complete oversized frame in one chunk is refused."""
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(FrameTooLarge):
        dec.feed(frame(b"A" * 2000))
    assert dec.buffered == 0


def test_frame_at_limit_accepted_and_decoder_reusable_after_error():
    dec = FrameDecoder(max_frame=1024)
    assert dec.feed(frame(b"A" * 1024)) == [b"A" * 1024]
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\x0b" + b"B" * 1025)
    assert dec.feed(frame(M1)) == [M1]


def test_frame_wraps_message():
    assert frame(b"X") == b"\x0bX\x1c\r"
