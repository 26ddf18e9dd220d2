"""What LINK documents about a media file's content, beyond its type and size.

Seed 004 'Upload Media' (``mediaContentType``): "If this parameter is incorrect, the
media can be uploaded successfully, but all the messages using this media can fail upon
sending." So these rules are checked before the upload, and by ``dispatcher validate``,
each failure naming the rule:

* images "must be 8-bit, RGB or RGBA";
* stickers (``image/webp``): "static stickers: max size 100KB", "Animated stickers: max
  size 500KB";
* audio: "only opus codecs, base audio/ogg is not supported" (``audio/ogg`` and
  ``audio/opus`` must carry Opus); ``audio/mp4`` must hold sound and no picture;
* video: "only H.264 video codec and AAC audio codec is supported", "videos with a
  single audio stream or no audio stream are supported".

Files are read with Pillow (images, stickers) and mutagen (Ogg and MP4/3GP containers),
imported only when a file of their kind is checked; only headers are decoded.
"""

from __future__ import annotations

import io
from collections.abc import Callable

KB = 1024
STATIC_STICKER_MAX = 100 * KB
ANIMATED_STICKER_MAX = 500 * KB

# ISO base media sample entries (``stsd``): H.264 is avc1/avc3, AAC is mp4a.
_H264 = (b"avc1", b"avc3")
_AAC = (b"mp4a",)
_IMAGE_MODES = ("RGB", "RGBA")
# PNG IHDR colour types: 2 truecolour (RGB), 6 truecolour with alpha (RGBA).
_PNG_COLOUR = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale with alpha", 6: "RGBA"}


def broken_rule(content_type: str, data: bytes) -> str | None:
    """The documented rule ``data`` breaks as ``content_type``, or None."""
    check = _CHECKS.get(content_type)
    return check(content_type, data) if check else None


def _image(content_type: str, data: bytes) -> str | None:
    rule = "images must be 8-bit RGB or RGBA"
    if content_type == "image/png":
        # The bit depth is in the IHDR chunk: Pillow reads 16-bit RGB as 8-bit "RGB".
        if len(data) < 26 or data[12:16] != b"IHDR":
            return "not a readable PNG (no IHDR header)"
        depth, colour = data[24], data[25]
        if colour not in (2, 6) or depth != 8:
            kind = _PNG_COLOUR.get(colour, f"colour type {colour}")
            return f"{rule}; this PNG is {depth}-bit {kind}"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            mode, bits = image.mode, getattr(image, "bits", 8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"not a readable image ({exc})"
    if mode not in _IMAGE_MODES or bits != 8:
        return f"{rule}; this one is {bits}-bit {mode}"
    return None


def _sticker(content_type: str, data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "WEBP":
                return f"stickers must be WebP; this is {image.format}"
            animated = bool(getattr(image, "is_animated", False))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"not a readable WebP sticker ({exc})"
    limit, kind = (ANIMATED_STICKER_MAX, "animated") if animated else (STATIC_STICKER_MAX, "static")
    if len(data) > limit:
        return f"{kind} stickers are at most {limit // KB} KB; this one is {len(data)} bytes"
    return None


def _opus(content_type: str, data: bytes) -> str | None:
    from mutagen import MutagenError
    from mutagen.oggopus import OggOpus

    try:
        OggOpus(io.BytesIO(data))
    except MutagenError:
        return f"{content_type} must be Ogg with the Opus codec (base audio/ogg is not supported)"
    return None


def _audio_mp4(content_type: str, data: bytes) -> str | None:
    tracks = _mp4_tracks(data)
    if isinstance(tracks, str):
        return tracks
    if any(handler == b"vide" for handler, _ in tracks):
        return "audio/mp4 must hold sound only; this file has a video track (send it as video)"
    if not any(handler == b"soun" for handler, _ in tracks):
        return "audio/mp4 must hold an audio track; this file has none"
    return None


def _video(content_type: str, data: bytes) -> str | None:
    rule = "videos must be H.264 with AAC audio (at most one audio stream)"
    tracks = _mp4_tracks(data)
    if isinstance(tracks, str):
        return tracks
    video = [codec for handler, codec in tracks if handler == b"vide"]
    audio = [codec for handler, codec in tracks if handler == b"soun"]
    if not video:
        return f"{rule}; this file has no video track"
    for codec in video:
        if codec not in _H264:
            return f"{rule}; this video track is {_name(codec)}"
    for codec in audio:
        if codec not in _AAC:
            return f"{rule}; this audio track is {_name(codec)}"
    if len(audio) > 1:
        return f"{rule}; this file has {len(audio)} audio streams"
    return None


def _mp4_tracks(data: bytes) -> list[tuple[bytes, bytes]] | str:
    """(handler type, sample entry format) of every track of an MP4/3GP file, read with
    mutagen's atom parser; or why the file cannot be read."""
    from mutagen.mp4 import AtomError, Atoms, MP4StreamInfoError

    handle = io.BytesIO(data)
    try:
        moov = Atoms(handle)[b"moov"]
        tracks = []
        for trak in moov.findall(b"trak"):
            ok, hdlr = trak[b"mdia", b"hdlr"].read(handle)
            ok2, stsd = trak[b"mdia", b"minf", b"stbl", b"stsd"].read(handle)
            if not (ok and ok2) or len(hdlr) < 12 or len(stsd) < 16:
                return "not a readable MP4/3GP file (a track is cut short)"
            # hdlr: version+flags, pre_defined, handler type; stsd: version+flags,
            # entry count, then the first entry's size and format.
            tracks.append((hdlr[8:12], stsd[12:16]))
    except (AtomError, MP4StreamInfoError, KeyError, OSError):
        return "not a readable MP4/3GP file (no movie header or track boxes)"
    return tracks


def _name(codec: bytes) -> str:
    return repr(codec.decode("latin-1"))


_CHECKS: dict[str, Callable[[str, bytes], str | None]] = {
    "image/jpeg": _image,
    "image/png": _image,
    "image/webp": _sticker,
    "audio/ogg": _opus,
    "audio/opus": _opus,
    "audio/mp4": _audio_mp4,
    "video/mp4": _video,
    "video/3gp": _video,
}
