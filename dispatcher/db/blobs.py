"""Files kept where every host reaches them: a worker reads what another host stored.

Content-addressed (a list or a video that many campaigns send is kept once). By
default in the database, in chunks of ``CHUNK_BYTES``; with ``BLOB_STORE=s3://bucket/
prefix``, in an S3-compatible object store (the database keeps the index). Storing and
reading stream either way: neither side holds a whole file. A content keeps the place
it was stored in, so changing ``BLOB_STORE`` leaves older files readable.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from sqlalchemy import Table, delete, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.db.bulk import dialect_name
from dispatcher.db.models import Blob, BlobChunk, CampaignFile
from dispatcher.errors import ConfigurationError, StorageError
from dispatcher.settings import get_settings

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
    store = ObjectStore.configured()
    count = 0 if store else -(-size // CHUNK_BYTES)
    location = store.url(sha) if store else None
    module: Any = postgresql if dialect_name(session) == "postgresql" else sqlite
    inserted = session.execute(
        module.insert(_BLOBS).on_conflict_do_nothing(),
        {
            "sha256": sha,
            "size": size,
            "chunks": count,
            "location": location,
            "created_at": datetime.now(UTC),
        },
    )
    if not inserted.rowcount:  # type: ignore[attr-defined]
        return sha, size  # another transaction stored it meanwhile
    if store:
        store.upload(path, sha)  # before the row commits: a reader never finds it missing
        return sha, size
    with path.open("rb") as handle:
        for seq in range(count):  # Core, one chunk at a time: nothing kept in the session
            session.execute(
                insert(_CHUNKS), {"sha256": sha, "seq": seq, "data": handle.read(CHUNK_BYTES)}
            )
    return sha, size


def chunks(session: Session, sha256: str) -> Iterator[bytes]:
    """The content, chunk by chunk (one query or read each: never the whole file)."""
    found = session.execute(select(Blob.chunks, Blob.location).where(Blob.sha256 == sha256)).first()
    if found is None:
        raise StorageError(f"no stored content {sha256[:12]}")
    count, location = found
    if location is not None:
        yield from ObjectStore.at(location).read(location)
        return
    for seq in range(count):
        data = session.scalar(
            select(BlobChunk.data).where(BlobChunk.sha256 == sha256, BlobChunk.seq == seq)
        )
        if data is None:
            raise StorageError(f"stored content {sha256[:12]} lacks chunk {seq}")
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
        raise StorageError(f"stored content {sha256[:12]} does not match its digest")
    return size


def drop_unused(session: Session) -> int:
    """Removes contents no campaign file names any more; returns how many."""
    unused = select(Blob.sha256, Blob.location).where(
        ~exists().where(CampaignFile.sha256 == Blob.sha256)
    )
    rows = session.execute(unused).all()
    for _, location in rows:
        if location is not None:
            ObjectStore.at(location).delete(location)
    gone = [sha for sha, _ in rows]
    for start in range(0, len(gone), 500):
        session.execute(delete(Blob).where(Blob.sha256.in_(gone[start : start + 500])))
    return len(gone)


class ObjectStore:
    """An S3-compatible bucket (boto3; ``S3_ENDPOINT_URL`` for MinIO and the like,
    credentials from the ``AWS_*`` variables as boto3 reads them)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            import boto3
        except ImportError:  # pragma: no cover - the extra is not installed
            raise ConfigurationError(
                "BLOB_STORE names an object store: install the s3 extra (pip install '.[s3]')"
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=get_settings().s3_endpoint_url)

    @classmethod
    def configured(cls) -> ObjectStore | None:
        """The store ``BLOB_STORE`` names; None for the database."""
        url = get_settings().blob_store
        return cls.at(url) if url else None

    @classmethod
    def at(cls, url: str) -> ObjectStore:
        parsed = urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigurationError(f"BLOB_STORE: {url!r} is not s3://bucket/prefix")
        key = (parsed.netloc, parsed.path.strip("/"))
        if key not in _STORES:
            _STORES[key] = cls(*key)
        return _STORES[key]

    def url(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha256)}"

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256}" if self.prefix else sha256

    def upload(self, path: Path, sha256: str) -> None:
        """Multipart for big files, streamed from disk."""
        with self._errors("cannot store a file"):
            self.client.upload_file(str(path), self.bucket, self._key(sha256))

    def read(self, location: str) -> Iterator[bytes]:
        with self._errors("cannot read a stored file"):
            key = urlsplit(location).path[1:]
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()

    def delete(self, location: str) -> None:
        with self._errors("cannot remove a stored file"):
            self.client.delete_object(Bucket=self.bucket, Key=urlsplit(location).path[1:])

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"object store s3://{self.bucket}: {doing}: {exc}") from exc


_STORES: dict[tuple[str, str], ObjectStore] = {}
