"""Files kept in the database, so a worker on any host reads what another host stored.

Content-addressed (a list or a video that many campaigns send is kept once) and in
chunks of ``CHUNK_BYTES``: storing and reading stream, neither side holds a whole file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Table, delete, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.db.bulk import dialect_name
from dispatcher.db.models import Blob, BlobChunk, CampaignFile

_BLOBS: Table = Blob.__table__  # type: ignore[assignment]
_CHUNKS: Table = BlobChunk.__table__  # type: ignore[assignment]

#: 1 MiB: big enough that a million-row list is ~60 statements, small enough that a
#: chunk is nothing in any process's memory.
CHUNK_BYTES = 1 << 20


def digest(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and size."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def put(session: Session, path: Path) -> tuple[str, int]:
    """Keeps the file's content (once per content); returns its sha256 and size.

    Committed with the caller's transaction: a concurrent store of the same content
    waits on the key and then finds it there."""
    sha, size = digest(path)
    if session.get(Blob, sha) is not None:
        return sha, size
    count = -(-size // CHUNK_BYTES)
    module: Any = postgresql if dialect_name(session) == "postgresql" else sqlite
    inserted = session.execute(
        module.insert(_BLOBS).on_conflict_do_nothing(),
        {"sha256": sha, "size": size, "chunks": count, "created_at": datetime.now(UTC)},
    )
    if not inserted.rowcount:  # type: ignore[attr-defined]
        return sha, size  # another transaction stored it meanwhile
    with path.open("rb") as handle:
        for seq in range(count):  # Core, one chunk at a time: nothing kept in the session
            session.execute(
                insert(_CHUNKS), {"sha256": sha, "seq": seq, "data": handle.read(CHUNK_BYTES)}
            )
    return sha, size


def chunks(session: Session, sha256: str) -> Iterator[bytes]:
    """The content, chunk by chunk (one query each: never the whole file at once)."""
    count = session.scalar(select(Blob.chunks).where(Blob.sha256 == sha256))
    if count is None:
        raise LookupError(f"no stored content {sha256[:12]}")
    for seq in range(count):
        data = session.scalar(
            select(BlobChunk.data).where(BlobChunk.sha256 == sha256, BlobChunk.seq == seq)
        )
        if data is None:
            raise LookupError(f"stored content {sha256[:12]} lacks chunk {seq}")
        yield data


def copy_to(session: Session, sha256: str, target: BinaryIO) -> int:
    """Writes the content into ``target``; returns the bytes written, checked against
    the sha256 it was stored under."""
    sha = hashlib.sha256()
    size = 0
    for data in chunks(session, sha256):
        sha.update(data)
        target.write(data)
        size += len(data)
    if sha.hexdigest() != sha256:
        raise LookupError(f"stored content {sha256[:12]} does not match its digest")
    return size


def drop_unused(session: Session) -> int:
    """Removes contents no campaign file names any more; returns how many."""
    unused = select(Blob.sha256).where(~exists().where(CampaignFile.sha256 == Blob.sha256))
    gone = list(session.scalars(unused))
    for start in range(0, len(gone), 500):
        session.execute(delete(Blob).where(Blob.sha256.in_(gone[start : start + 500])))
    return len(gone)
