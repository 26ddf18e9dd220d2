"""Rules of the seed's 'Upload Media' > 'Normal media' endpoint."""

from __future__ import annotations

import hashlib

from starlette.datastructures import FormData, UploadFile

from dispatcher.simulator.codes import BAD_REQUEST, MEDIA_FILE_ERROR

_MB = 1024 * 1024
_DOCUMENT_TYPES = (
    "text/plain",
    "application/pdf",
    "application/vnd.ms-powerpoint",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)
_AUDIO_TYPES = ("audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus")

# Seed 'mediaContentType': supported types and their maximum sizes. Stickers allow 100KB static
# and 500KB animated: the larger here, the smaller for a WebP without the animation flag.
MAX_SIZE: dict[str, int] = {
    "image/jpeg": 16 * _MB,
    "image/png": 16 * _MB,
    **dict.fromkeys(_DOCUMENT_TYPES, 100 * _MB),
    **dict.fromkeys(_AUDIO_TYPES, 16 * _MB),
    "video/mp4": 16 * _MB,
    "video/3gp": 16 * _MB,
    "image/webp": 500 * 1024,
}
STATIC_STICKER_MAX = 100 * 1024
REQUIRED_FIELDS = ("source", "platformId", "platformPartnerId", "mediaContentType")


class MediaUploadError(Exception):
    """An upload refused with one of the seed's 'Upload Media' error codes."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def required_fields(form: FormData) -> dict[str, str]:
    """The four mandatory text parameters, or 112402 naming the first one missing."""
    fields = {}
    for name in REQUIRED_FIELDS:
        value = form.get(name)
        if not isinstance(value, str) or not value.strip():
            raise MediaUploadError(BAD_REQUEST, f"missing parameter {name}")
        fields[name] = value.strip()
    if not (fields["source"].startswith("+") and fields["source"][1:].isdigit()):
        # Seed 'Request parameters': "Whatsapp business phonenumber starting with +".
        raise MediaUploadError(BAD_REQUEST, "source must be a phone number starting with +")
    return fields


async def inspect_file(form: FormData, content_type: str) -> tuple[str, int]:
    """SHA-256 and size of the ``media`` part, or 112502 (seed 'File Errors')."""
    upload = form.get("media")
    if not isinstance(upload, UploadFile):
        raise MediaUploadError(MEDIA_FILE_ERROR, "media file part is missing")
    limit = MAX_SIZE.get(content_type)
    if limit is None:
        raise MediaUploadError(MEDIA_FILE_ERROR, "unsupported mediaContentType")
    digest = hashlib.sha256()
    size = 0
    while chunk := await upload.read(_MB):
        if size == 0 and content_type == "image/webp" and not _animated_webp(chunk):
            limit = STATIC_STICKER_MAX
        digest.update(chunk)
        size += len(chunk)
        if size > limit:
            raise MediaUploadError(
                MEDIA_FILE_ERROR, f"file exceeds the {limit} byte limit for {content_type}"
            )
    return digest.hexdigest(), size


def _animated_webp(head: bytes) -> bool:
    """An extended WebP (``VP8X`` chunk first) with its animation flag set."""
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20:21] and head[20] & 2)
