"""The console's pages over real HTTP (no browser: ``tests/e2e/test_console.py`` drives
one): login and its refusals, where a login may lead, a revoked key's session, the
dry run's page, and what an action the campaign's state does not allow says."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dispatcher.db import Database
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web.app import create_internal_app
from dispatcher.operations import access
from dispatcher.settings import get_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "campaigns" / "example"
#: The example's numbers, whole (+46 or +47 and 8 or 9 digits).
WHOLE_NUMBER = re.compile(r"\+4[67]\d{8}")


@dataclass
class Console:
    http: httpx.Client
    db: Database

    def key(self, scope: str, name: str = "") -> str:
        with self.db.session() as session:
            _, secret = access.create_key(session, name or f"k-{scope}", access.Scope(scope))
        return secret

    def csrf(self, path: str = "/console/login") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.http.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def log_in(self, key: str, next_path: str = "/console/") -> httpx.Response:
        form = {"csrf": self.csrf(), "key": key, "next": next_path}
        return self.http.post("/console/login", data=form)

    def check_example(self) -> httpx.Response:
        """The example's files checked (a dry run) from the new campaign page."""
        files = [("files", (p.name, p.read_bytes())) for p in EXAMPLE.iterdir() if p.is_file()]
        form = {"csrf": self.csrf("/console/new"), "intent": "check"}
        return self.http.post("/console/new", data=form, files=files)


@pytest.fixture()
def console(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    monkeypatch.delenv("REDIS_URL", raising=False)  # no broker: dry runs only
    monkeypatch.setenv("DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    with (
        ServerThread(create_internal_app(db)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        yield Console(http, db)
    get_settings.cache_clear()


def test_a_page_asks_for_a_login_and_a_wrong_key_gets_the_form_again(console: Console) -> None:
    asked = console.http.get("/console/campaigns/7")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/console/login?next=/console/campaigns/7"
    refused = console.log_in("wcd_nothing_like_a_key")
    assert refused.status_code == 401
    assert "That key is not valid" in refused.text
    assert 'aria-invalid="true"' in refused.text


def test_a_login_without_the_forms_csrf_token_is_refused(console: Console) -> None:
    key = console.key("send")
    console.csrf()  # the session has a token: the post does not carry it
    refused = console.http.post("/console/login", data={"key": key})
    assert refused.status_code == 403
    assert console.http.get("/console/").status_code == 303  # still not logged in


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("/console/campaigns/3", "/console/campaigns/3"),
        ("//elsewhere.example/console/", "/console/"),
        ("https://elsewhere.example/console/", "/console/"),
        ("/metrics", "/console/"),
    ],
)
def test_a_login_leads_back_only_to_a_console_page(
    console: Console, asked: str, lands: str
) -> None:
    answer = console.log_in(console.key("read"), asked)
    assert answer.status_code == 303
    assert answer.headers["location"] == lands


def test_a_revoked_keys_session_ends_at_its_next_page(console: Console) -> None:
    console.log_in(console.key("send", "leaver"))
    assert console.http.get("/console/").status_code == 200
    with console.db.session() as session:
        access.revoke(session, "leaver")
    assert console.http.get("/console/").status_code == 303
    assert (
        console.http.get("/console/live/campaigns").headers["location"].startswith("/console/login")
    )


def test_a_dry_run_shows_its_forecast_and_masked_rows_and_offers_to_start_it(
    console: Console,
) -> None:
    console.log_in(console.key("send"))
    checked = console.check_example()
    assert checked.status_code == 200, checked.text
    assert "200 rows read; 190 people would be sent the message." in checked.text
    found = re.search(r'action="/console/campaigns/(\d+)/start"', checked.text)
    assert found, checked.text
    page = console.http.get(f"/console/campaigns/{found.group(1)}")
    assert page.status_code == 200
    assert "previewed" in page.text
    assert "Start sending" in page.text
    assert "merged into line 6" in page.text  # the identity merges, with their reasons
    assert "invalid phone number" in page.text  # and the rejected rows
    assert "•••" in page.text
    assert not WHOLE_NUMBER.search(page.text)
    listed = console.http.get("/console/live/campaigns")
    assert "dry run: 190 people would be sent" in listed.text


def test_an_action_the_campaigns_state_does_not_allow_is_said_on_its_page(
    console: Console,
) -> None:
    console.log_in(console.key("send"))
    checked = console.check_example()
    campaign = re.search(r"/console/campaigns/(\d+)/start", checked.text)
    assert campaign
    path = f"/console/campaigns/{campaign.group(1)}"
    answer = console.http.post(f"{path}/pause", data={"csrf": console.csrf(path)})
    assert answer.status_code == 303
    assert answer.headers["location"] == path
    assert "Not done:" in console.http.get(path).text
    unknown = console.http.post(f"{path}/explode", data={"csrf": console.csrf(path)})
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"intent": "schedule", "send_at": "next tuesday"}, "send_at"),
        ({"intent": "schedule", "send_at": "2020-01-01T09:00"}, "2020-01-01 09:00 UTC has passed"),
        ({"intent": "check"}, "No files were chosen."),
    ],
)
def test_a_bad_upload_form_is_answered_with_the_field_at_fault(
    console: Console, form: dict[str, str], said: str
) -> None:
    console.log_in(console.key("send"))
    files = [("files", (p.name, p.read_bytes())) for p in EXAMPLE.iterdir() if p.is_file()]
    sent = form | {"csrf": console.csrf("/console/new")}
    answer = console.http.post(
        "/console/new", data=sent, files=files if "send_at" in form else None
    )
    assert answer.status_code == 422
    assert said in answer.text


def test_a_zip_of_the_folder_is_checked_as_its_files_are(console: Console) -> None:
    console.log_in(console.key("send"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in EXAMPLE.iterdir():
            if path.is_file():
                archive.write(path, f"example/{path.name}")
    form = {"csrf": console.csrf("/console/new"), "intent": "check"}
    files = [("files", ("example.zip", buffer.getvalue()))]
    checked = console.http.post("/console/new", data=form, files=files)
    assert checked.status_code == 200, checked.text
    assert "190 people would be sent the message." in checked.text


def test_the_pages_style_and_script_are_served_without_a_login(console: Console) -> None:
    for name, kind in (("console.css", "text/css"), ("console.js", "javascript")):
        answer = console.http.get(f"/console/static/{name}")
        assert answer.status_code == 200
        assert kind in answer.headers["content-type"]


def test_a_refused_form_post_gets_a_page_not_json(console: Console) -> None:
    """A person's form post that is refused (no CSRF token here) reads as a page."""
    console.log_in(console.key("send"))
    refused = console.http.post("/console/campaigns/1/pause", data={})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "CSRF" in refused.text


def test_an_id_beyond_any_campaign_is_not_found(console: Console) -> None:
    console.log_in(console.key("send"))
    huge = "99999999999999999999"
    assert console.http.get(f"/console/campaigns/{huge}").status_code == 404
    assert console.http.get(f"/console/live/campaigns/{huge}").status_code == 404
    bearer = {"Authorization": f"Bearer {console.key('read', 'reader')}"}
    assert console.http.get(f"/campaigns/{huge}", headers=bearer).status_code == 404
