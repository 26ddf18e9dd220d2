"""Uploads that fail temporarily are tried again (seed 004 'Upload Media': 112503
"Temporary network errors, request can be reissued later", 112500 server error); only
a permanent refusal, or a temporary one that outlasts the retries, fails the campaign.
Over real HTTP: the simulator answers the first N uploads with the error."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database
from dispatcher.errors import MediaError
from dispatcher.interfaces.console import summary
from dispatcher.interfaces.servers import ServerThread
from dispatcher.operations import progress
from dispatcher.preparation import media
from dispatcher.preparation.media import MediaFile, media_id_for, read_media
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.simulator import SimulatorConfig, create_app
from tests.conftest import ROOT, copy_campaign

SOURCE = "+4790000000"
QUICK = (0.01, 0.01, 0.01, 0.01)
Link = Callable[..., tuple[ServerThread, LinkClient]]


@pytest.fixture()
def banner() -> MediaFile:
    return read_media(ROOT / "campaigns" / "example" / "banner.png", "image")


def simulator(**options: object) -> ServerThread:
    config = SimulatorConfig(username="u", password="pw", platform_id="P", **options)  # type: ignore[arg-type]
    return ServerThread(create_app(config)).start()


@pytest.fixture()
def link() -> Iterator[Link]:
    servers: list[ServerThread] = []
    clients: list[LinkClient] = []

    def make(**options: object) -> tuple[ServerThread, LinkClient]:
        servers.append(simulator(**options))
        clients.append(LinkClient(LinkCredentials(servers[-1].url, "u", "pw", "P", "1")))
        return servers[-1], clients[-1]

    yield make
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def stats(server: ServerThread) -> dict[str, object]:
    return dict(httpx.get(f"{server.url}/_simulator/stats", timeout=5).json())


@pytest.mark.parametrize("code", [112503, 112500])
def test_a_temporary_upload_error_is_tried_again_and_said(
    db: Database, link: Link, banner: MediaFile, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    server, client = link(upload_failures=2, upload_failure_code=code)
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="dispatcher.preparation.media"):
        media_id = media_id_for(db, client, SOURCE, banner, notes=notes, waits=QUICK)
    assert media_id
    assert (stats(server)["upload_failures"], stats(server)["media_uploads"]) == (2, 1)
    assert notes == [
        f"upload of banner.png succeeded on try 3, after temporary failures ({code}, {code})"
    ]
    assert [r.getMessage().split(";")[1] for r in caplog.records] == [
        " try 2 of 5 in 0 s",
        " try 3 of 5 in 0 s",
    ]


def test_a_temporary_error_that_outlasts_the_retries_fails_with_every_try_named(
    db: Database, link: Link, banner: MediaFile
) -> None:
    server, client = link(upload_failures=100)
    with pytest.raises(MediaError, match=r"5 tries: 112503, 112503, 112503, 112503, 112503"):
        media_id_for(db, client, SOURCE, banner, waits=QUICK)
    assert stats(server)["upload_failures"] == 5  # bounded: the first and four more


def test_a_permanent_refusal_fails_at_once(
    db: Database, link: Link, banner: MediaFile, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = link()
    unsupported = replace(banner, content_type="image/bmp")  # 112502 File processing error
    with (
        caplog.at_level(logging.WARNING, logger="dispatcher.preparation.media"),
        pytest.raises(MediaError, match=r"refused the upload of banner\.png"),
    ):
        media_id_for(db, client, SOURCE, unsupported, waits=QUICK)
    assert not caplog.records  # not tried again


def test_a_campaign_whose_upload_failed_once_starts_and_notes_it(
    db: Database, link: Link, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "UPLOAD_RETRY_WAITS", QUICK)
    _, client = link(upload_failures=1)
    folder = copy_campaign("example", tmp_path / "example")
    campaign_id = create_campaign(db, load_campaign(folder))
    assert prepare_campaign(db, client, campaign_id, reports_dir=tmp_path / "r")
    with db.session() as session:
        state, notes = session.execute(
            select(Campaign.state, Campaign.notes).where(Campaign.id == campaign_id)
        ).one()
    assert state == "sending"
    # (The name as the campaign's stored inputs give it ends in the file's own.)
    wanted = re.compile(
        r"upload of \S*banner\.png succeeded on try 2, after temporary failures \(112503\)"
    )
    assert any(wanted.fullmatch(note) for note in notes or []), notes
    with db.session() as session:  # `dispatcher status` shows it under the counts
        shown = progress.progress(session, campaign_id)
    assert shown is not None
    rendered = Console(width=200, record=True)
    rendered.print(summary(shown))
    assert "Note: upload of" in rendered.export_text()
