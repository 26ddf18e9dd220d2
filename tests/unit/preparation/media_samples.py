"""Small media files built in memory, for the media rules: images and stickers with
Pillow, Ogg streams with mutagen's page writer, MP4/3GP files box by box (ISO base
media format: just the boxes a track list is read from)."""

from __future__ import annotations

import io
import os
import struct
import zlib

from mutagen.ogg import OggPage
from PIL import Image


def image(mode: str = "RGB", fmt: str = "PNG", size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


def png_16bit_rgb(width: int = 2, height: int = 2) -> bytes:
    """A 16-bit-per-channel RGB PNG, which Pillow cannot write."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00" * 6 * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def webp(*, animated: bool = False, noise: int = 0) -> bytes:
    """A WebP sticker; ``noise`` px square of random pixels makes it big (lossless)."""
    side = noise or 32
    frames = [Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)) for _ in range(2)]
    out = io.BytesIO()
    if animated:
        frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    else:
        frames[0].save(out, "WEBP", lossless=True)
    return out.getvalue()


def ogg(first_packet: bytes, second_packet: bytes = b"") -> bytes:
    pages = []
    for sequence, packet in enumerate((first_packet, second_packet)):
        page = OggPage()
        page.serial, page.sequence, page.packets = 1, sequence, [packet]
        page.first = sequence == 0
        page.position = 0
        pages.append(page.write())
    return b"".join(pages)


def ogg_opus() -> bytes:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0)
    return ogg(head, tags)


def ogg_vorbis() -> bytes:
    ident = b"\x01vorbis" + struct.pack("<IBIiiiBB", 0, 1, 44100, 0, 128000, 0, 0xB8, 1)
    comment = b"\x03vorbis" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0) + b"\x01"
    return ogg(ident, comment)


def _box(kind: bytes, *children: bytes) -> bytes:
    body = b"".join(children)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _track(handler: bytes, codec: bytes) -> bytes:
    hdlr = _box(b"hdlr", b"\x00" * 8 + handler + b"\x00" * 12 + b"\x00")
    mdhd = _box(b"mdhd", struct.pack(">B3xIIII", 0, 0, 0, 1000, 0) + b"\x00" * 4)
    entry = struct.pack(">I", 16) + codec + b"\x00" * 8
    stsd = _box(b"stsd", struct.pack(">II", 0, 1) + entry)
    minf = _box(b"minf", _box(b"stbl", stsd))
    return _box(b"trak", _box(b"mdia", mdhd, hdlr, minf))


def mp4(*tracks: tuple[bytes, bytes], brand: bytes = b"isom") -> bytes:
    """An MP4 (or, with brand ``3gp4``, 3GP) with these (handler, codec) tracks."""
    ftyp = _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand)
    mvhd = _box(b"mvhd", struct.pack(">B3xIIII", 0, 0, 0, 1000, 0) + b"\x00" * 80)
    return ftyp + _box(b"moov", mvhd, *(_track(h, c) for h, c in tracks)) + _box(b"mdat")


H264 = (b"vide", b"avc1")
HEVC = (b"vide", b"hvc1")
AAC = (b"soun", b"mp4a")
OPUS_IN_MP4 = (b"soun", b"Opus")
