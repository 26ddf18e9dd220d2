"""Campaign files in an S3-compatible object store (BLOB_STORE), against a local
S3-compatible server (moto's), over real HTTP."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher.campaigns import inputs
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, blobs
from dispatcher.db.models import Blob, BlobChunk
from dispatcher.errors import StorageError
from dispatcher.settings import get_settings
from tests.conftest import copy_campaign, free_port

BUCKET = "campaign-files"


def _configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    blobs._STORES.clear()


@pytest.fixture()
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3-compatible server on loopback with an empty bucket; BLOB_STORE unset."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _configure(
        monkeypatch,
        S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="dispatcher",
        AWS_SECRET_ACCESS_KEY="dispatcher-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        server.stop()
        monkeypatch.delenv("BLOB_STORE", raising=False)
        get_settings.cache_clear()
        blobs._STORES.clear()


def keys(client: Any) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_a_campaign_s_files_go_to_the_object_store_and_come_back_whole(
    db: Database, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, BLOB_STORE=f"s3://{BUCKET}/dispatcher")
    folder = copy_campaign("example", tmp_path / "example")
    (folder / "banner.png").write_bytes(os.urandom(blobs.CHUNK_BYTES * 6))  # multipart
    loaded = load_campaign(folder)
    originals = {n: (folder / n).read_bytes() for n in ("recipients.csv", "banner.png")}
    campaign_id = create_campaign(db, loaded)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(BlobChunk)) == 0
        shas = set(session.scalars(select(Blob.sha256)))
    assert keys(bucket) == sorted(f"dispatcher/{sha}" for sha in shas)
    shutil.rmtree(folder)
    with inputs.materialized(db, campaign_id, loaded) as fetched:
        assert fetched.resolve("banner.png").read_bytes() == originals["banner.png"]
        assert fetched.recipient_files()[0].read_bytes() == originals["recipients.csv"]

    with db.session() as session:  # ended long ago: purged from the bucket too
        ended = session.get(Campaign, campaign_id)
        assert ended is not None
        ended.state, ended.finished_at = "completed", datetime.now(UTC) - timedelta(days=91)
    assert inputs.purge(db, timedelta(days=90)).contents == 3
    assert keys(bucket) == []


def test_files_stored_in_the_database_stay_readable_after_moving_to_an_object_store(
    db: Database, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_campaign(copy_campaign("example", tmp_path / "example"))
    before = create_campaign(db, loaded)  # BLOB_STORE unset: in the database
    _configure(monkeypatch, BLOB_STORE=f"s3://{BUCKET}")
    with inputs.materialized(db, before, loaded) as fetched:
        assert (
            fetched.resolve("banner.png").read_bytes()
            == (loaded.folder / "banner.png").read_bytes()
        )
    assert keys(bucket) == []  # the same contents again are not stored twice


def test_an_unreachable_object_store_is_a_clear_storage_error(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(
        monkeypatch,
        BLOB_STORE="s3://nowhere",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="y",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    try:
        with pytest.raises(StorageError, match="object store s3://nowhere"):
            create_campaign(db, load_campaign(copy_campaign("example", tmp_path / "e")))
        with db.session() as session:  # nothing registered half-way
            assert session.scalar(select(func.count()).select_from(Campaign)) == 0
    finally:
        monkeypatch.delenv("BLOB_STORE")
        get_settings.cache_clear()
        blobs._STORES.clear()
