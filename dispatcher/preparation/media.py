"""Shared media: uploaded once per file and sender, then sent by id.

Seed 004 'Upload Media' recommends ``POST /media`` "for the campaigns, where the same
media will be sent to many destinations". The id is cached by sha256 + sender +
provider account (and, for the simulator, its running instance); WhatsApp
media ids stay usable for 30 days, so a cached id younger than ``MEDIA_ID_VALID_FOR``
is reused and an older one is uploaded again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import LoadedCampaign
from dispatcher.db import Database
from dispatcher.db.bulk import insert_ignoring_duplicates
from dispatcher.db.models import Media
from dispatcher.db.timestamps import aware
from dispatcher.errors import LinkError, LinkTransientError, MediaError
from dispatcher.preparation import media_rules
from dispatcher.providers import Provider, UploadedMedia, serving

log = logging.getLogger(__name__)

MEDIA_ID_VALID_FOR = timedelta(days=29)  # Meta keeps uploaded media 30 days
#: Waits before each new try of an upload that failed temporarily (seed 004 'Upload
#: Media': 112503 "Temporary network errors, request can be reissued later", 112500
#: server error, or no answer): four tries more over about half a minute, then the
#: campaign fails with the last error.
UPLOAD_RETRY_WAITS: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
_MB = 1024 * 1024
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")

# Seed 004 'Upload Media': supported mediaContentType values and their size limits.
SIZE_LIMITS: dict[str, int] = {
    "image/jpeg": 16 * _MB,  # documented under images: 5 MB at Meta, 16 MB at LINK
    "image/png": 16 * _MB,
    "video/mp4": 16 * _MB,
    "video/3gp": 16 * _MB,
    "audio/aac": 16 * _MB,
    "audio/mp4": 16 * _MB,
    "audio/mpeg": 16 * _MB,
    "audio/amr": 16 * _MB,
    "audio/ogg": 16 * _MB,
    "audio/opus": 16 * _MB,
    "application/pdf": 100 * _MB,
    "text/plain": 100 * _MB,
    "application/msword": 100 * _MB,
    "application/vnd.ms-excel": 100 * _MB,
    "application/vnd.ms-powerpoint": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * _MB,
    "image/webp": 500 * 1024,  # stickers: 100 KB static (media_rules), 500 KB animated
}
_BY_SUFFIX = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",  # audio/mp4 for an audio object (``_content_type``)
    ".m4a": "audio/mp4",
    ".3gp": "video/3gp",
    ".3gpp": "video/3gp",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".webp": "image/webp",
    ".aac": "audio/aac",
    ".amr": "audio/amr",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_MAGIC = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "application/pdf": b"%PDF",
}
# Which content types each kind of media object may carry (seed 004 'Upload Media').
KIND_TYPES: dict[str, set[str]] = {
    "image": {"image/jpeg", "image/png"},
    "video": {"video/mp4", "video/3gp"},
    "audio": {"audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus"},
    "sticker": {"image/webp"},
    "document": {t for t in SIZE_LIMITS if t.startswith(("application/", "text/"))},
}
# Seed 004 'Document parameter': "PDF is the only supported format" in template headers.
TEMPLATE_HEADER_DOCUMENT_TYPES = {"application/pdf"}


@dataclass(frozen=True, slots=True)
class MediaFile:
    path: Path
    content_type: str
    sha256: str
    data: bytes


def read_media(path: Path, kind: str, *, template_header: bool = False) -> MediaFile:
    """Read and check a media file against the documented types, size limits and
    content rules (``media_rules``: bit depth, codecs, sticker kinds)."""
    content_type = _content_type(path, kind)
    if content_type is None:
        raise MediaError(f"{path.name}: unsupported file type {path.suffix or '(none)'}")
    allowed = KIND_TYPES.get(kind)
    if kind == "document" and template_header:
        allowed = TEMPLATE_HEADER_DOCUMENT_TYPES
    if allowed is not None and content_type not in allowed:
        raise MediaError(f"{path.name}: a {kind} header takes {', '.join(sorted(allowed))}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror})") from exc
    if not data:
        raise MediaError(f"{path.name}: the file is empty")
    limit = SIZE_LIMITS[content_type]
    if len(data) > limit:
        raise MediaError(f"{path.name}: {len(data)} bytes is over the {limit} byte limit")
    magic = _MAGIC.get(content_type)
    if magic and not data.startswith(magic):
        raise MediaError(f"{path.name}: the content is not {content_type}")
    broken = media_rules.broken_rule(content_type, data)
    if broken:
        raise MediaError(f"{path.name} ({content_type}): {broken}")
    return MediaFile(path, content_type, hashlib.sha256(data).hexdigest(), data)


def _content_type(path: Path, kind: str) -> str | None:
    """The mediaContentType of a file: by its suffix, and an ``.mp4`` in an audio
    object is ``audio/mp4`` (seed 004 'Audio message' lists .mp4)."""
    suffix = path.suffix.lower()
    if kind == "audio" and suffix == ".mp4":
        return "audio/mp4"
    return _BY_SUFFIX.get(suffix)


def media_id_for(
    db: Database,
    client: Provider,
    source: str,
    media: MediaFile,
    *,
    notes: list[str] | None = None,
    waits: Sequence[float] | None = None,
) -> str:
    """The media id for this file and sender: cached if still valid, else uploaded.

    An upload that failed temporarily is tried again after each of ``waits``
    (``UPLOAD_RETRY_WAITS`` when None); each
    retry is logged and, when the upload then succeeds, said in ``notes``. A permanent
    refusal (112502 file processing error, 112402, 112408, auth) fails at once.

    The cache is per provider account (an id means nothing to another account) and, for
    the project's simulator, per running instance: a restarted simulator has forgotten
    its uploads, so its old ids would fail every message with 131053.

    The upload runs outside any transaction (it may take a while, and SQLite has a
    single writer); two campaigns uploading the same file at once both succeed, and
    the later one keeps the earlier's cached id.
    """
    now = datetime.now(UTC)
    account = client.account
    where = (Media.sha256 == media.sha256, Media.source == source, Media.account == account)
    with db.session() as session:
        cached = session.scalar(select(Media).where(*where))
        if cached is not None and _still_valid(client, cached, now):
            return cached.media_id
    uploaded = _upload(client, source, media, notes, UPLOAD_RETRY_WAITS if waits is None else waits)
    values = {
        "media_id": uploaded.media_id,
        "uploaded_at": now,
        "simulator_instance": uploaded.simulator_instance,
    }
    with db.session() as session:
        if cached is None:
            row = {
                "sha256": media.sha256,
                "source": source,
                "account": account,
                "content_type": media.content_type,
                "size": len(media.data),
                **values,
            }
            insert_ignoring_duplicates(session, Media.__table__, [row])  # type: ignore[arg-type]
        else:
            session.execute(update(Media).where(*where).values(**values))
    return uploaded.media_id


def _upload(
    client: Provider,
    source: str,
    media: MediaFile,
    notes: list[str] | None,
    waits: Sequence[float],
) -> UploadedMedia:
    name = media.path.name
    failures: list[str] = []
    for attempt in range(len(waits) + 1):
        try:
            uploaded = client.upload_media(
                source=source, content_type=media.content_type, filename=name, data=media.data
            )
        except LinkTransientError as exc:
            failures.append(_code_of(exc))
            if attempt == len(waits):
                raise MediaError(
                    f"{client.name} kept failing the upload of {name}: {exc} "
                    f"({len(failures)} tries: {', '.join(failures)})"
                ) from exc
            log.warning("upload of %s failed temporarily (%s); try %d of %d in %.0f s",
                        name, exc, attempt + 2, len(waits) + 1, waits[attempt])  # fmt: skip
            time.sleep(waits[attempt])
        except LinkError as exc:
            raise MediaError(f"{client.name} refused the upload of {name}: {exc}") from exc
        else:
            if failures and notes is not None:
                notes.append(f"upload of {name} succeeded on try {attempt + 1}, after "
                             f"temporary failures ({', '.join(failures)})")  # fmt: skip
            return uploaded
    raise AssertionError("unreachable")  # pragma: no cover


def _code_of(exc: LinkTransientError) -> str:
    if exc.result_code is not None:
        return str(exc.result_code)
    return f"HTTP {exc.http_status}" if exc.http_status is not None else "no answer"


def media_ids(
    db: Database,
    client: Provider,
    loaded: LoadedCampaign,
    *,
    notes: list[str] | None = None,
    waits: Sequence[float] | None = None,
) -> dict[str, str]:
    """Upload every ``file:`` of the message once (or reuse its cached id); uploads
    that had to be tried again are said in ``notes``."""
    ids: dict[str, str] = {}
    client = serving(client, loaded.spec.sender)
    source = loaded.spec.sender.address
    for ref in loaded.media_refs():
        if ref.file not in ids:
            media = read_media(
                loaded.resolve(ref.file), ref.kind, template_header=ref.in_template_header
            )
            ids[ref.file] = media_id_for(db, client, source, media, notes=notes, waits=waits)
    return ids


def stand_in_media(loaded: LoadedCampaign) -> dict[str, str]:
    """A preview uploads nothing: media refs get a recognisable stand-in id."""
    return {ref.file: "dry-run-media-id" for ref in loaded.media_refs()}


def _still_valid(client: Provider, cached: Media, now: datetime) -> bool:
    if aware(cached.uploaded_at) <= now - MEDIA_ID_VALID_FOR:
        return False
    if cached.simulator_instance is None:
        return True  # the provider keeps it for the whole validity
    return client.simulator_instance() == cached.simulator_instance


# Meta's "Media upload error": the id no longer resolves (expired, or purged early).
MEDIA_UPLOAD_ERROR = 131053


def media_ids_in(message: Any) -> set[str]:
    """The uploaded media ids a composed message refers to."""
    found: set[str] = set()
    if isinstance(message, dict):
        for key, value in message.items():
            if key in MEDIA_KINDS and isinstance(value, dict) and isinstance(value.get("id"), str):
                found.add(value["id"])
            else:
                found |= media_ids_in(value)
    elif isinstance(message, list):
        for value in message:
            found |= media_ids_in(value)
    return found


def forget(session: Session, media_ids: set[str]) -> int:
    """Drop cached ids the provider could not resolve, so the next campaign uploads afresh."""
    if not media_ids:
        return 0
    return int(
        session.execute(delete(Media).where(Media.media_id.in_(media_ids))).rowcount  # type: ignore[attr-defined]
    )
